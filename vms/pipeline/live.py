"""Live frames from a worker to the API process through shared memory: never through a file.

One `LiveChannel` per camera, created by the supervisor (API process) and attached by each
worker process it starts for that camera, so viewers survive a worker restart. It holds:

- a viewer counter the API writes and the worker reads: the worker encodes JPEGs only while it
  is non-zero (and only if the policy allows live view);
- the latest masked JPEG (the worker writes, the API reads);
- a mask-preview request (API) and its answer (worker).

Every field has exactly one writer process; slots are seqlocks (odd sequence = being written),
so neither side ever waits on a lock a crashed peer might hold.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

_MAGIC = 0x564D_534C  # "VMSL"
_HEADER = struct.Struct("<IIII")  # magic, viewers, preview request id, preview request mode
_HEADER_SIZE = 64
_SLOT = struct.Struct("<QIIIId")  # seq, length, width, height, tag, timestamp (epoch s)
_SLOT_SIZE = 64

LIVE_CAPACITY = 8 * 1024 * 1024  # a 4K JPEG at high quality fits
PREVIEW_CAPACITY = 32 * 1024 * 1024  # a 4K PNG

PREVIEW_MASKED = 1
PREVIEW_RAW = 2


class FrameTooLarge(ValueError):
    """The encoded image does not fit the slot."""


@dataclass(frozen=True, slots=True)
class LiveImage:
    seq: int
    data: bytes
    width: int
    height: int
    at: float  # epoch seconds when the frame was decoded
    tag: int


class _Slot:
    def __init__(self, buf: memoryview, offset: int, capacity: int) -> None:
        self._buf = buf
        self._hdr = offset
        self._data = offset + _SLOT_SIZE
        self.capacity = capacity

    def seq(self) -> int:
        return int(struct.unpack_from("<Q", self._buf, self._hdr)[0])

    def write(self, data: bytes, width: int, height: int, tag: int, at: float) -> None:
        if len(data) > self.capacity:
            raise FrameTooLarge(f"{len(data)} bytes do not fit a {self.capacity}-byte slot")
        seq = self.seq()
        odd = seq + 1 if seq % 2 == 0 else seq
        struct.pack_into("<Q", self._buf, self._hdr, odd)
        self._buf[self._data : self._data + len(data)] = data
        _SLOT.pack_into(self._buf, self._hdr, odd, len(data), width, height, tag, at)
        struct.pack_into("<Q", self._buf, self._hdr, odd + 1)

    def read(self, after_seq: int = 0) -> LiveImage | None:
        """The slot's content if newer than `after_seq` and non-empty; None otherwise."""
        for _ in range(50):
            seq, length, width, height, tag, at = _SLOT.unpack_from(self._buf, self._hdr)
            if seq % 2:
                time.sleep(0.0005)
                continue
            if seq <= after_seq or length == 0:
                return None
            data = bytes(self._buf[self._data : self._data + length])
            if self.seq() == seq:
                return LiveImage(seq, data, width, height, at, tag)
        return None


def _attach_untracked(name: str) -> SharedMemory:
    # Python < 3.13 registers an attached segment with the resource tracker, which would then
    # unlink it (and warn) when this worker exits; the creating process owns its lifetime.
    original = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = original


class LiveChannel:
    def __init__(self, shm: SharedMemory, *, owner: bool) -> None:
        self._shm = shm
        self._owner = owner
        buf = shm.buf
        assert buf is not None
        self._buf = buf
        magic, *_ = _HEADER.unpack_from(buf, 0)
        if magic != _MAGIC:
            raise ValueError(f"shared memory {shm.name} is not a live channel")
        live_cap, preview_cap = struct.unpack_from("<II", buf, _HEADER.size)
        self._live = _Slot(buf, _HEADER_SIZE, live_cap)
        self._preview = _Slot(buf, _HEADER_SIZE + _SLOT_SIZE + live_cap, preview_cap)
        self._lock = threading.Lock()  # viewer count updates within the API process

    @classmethod
    def create(
        cls,
        live_capacity: int = LIVE_CAPACITY,
        preview_capacity: int = PREVIEW_CAPACITY,
        name: str | None = None,
    ) -> LiveChannel:
        size = _HEADER_SIZE + 2 * _SLOT_SIZE + live_capacity + preview_capacity
        # Pages are only backed by RAM once written: the capacities cost nothing until used.
        shm = SharedMemory(create=True, size=size, name=name)
        buf = shm.buf
        assert buf is not None
        buf[: _HEADER_SIZE + _SLOT_SIZE] = bytes(_HEADER_SIZE + _SLOT_SIZE)
        _HEADER.pack_into(buf, 0, _MAGIC, 0, 0, 0)
        struct.pack_into("<II", buf, _HEADER.size, live_capacity, preview_capacity)
        start = _HEADER_SIZE + _SLOT_SIZE + live_capacity
        buf[start : start + _SLOT_SIZE] = bytes(_SLOT_SIZE)
        return cls(shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> LiveChannel:
        return cls(_attach_untracked(name), owner=False)

    @property
    def name(self) -> str:
        return self._shm.name

    # -- API side ----------------------------------------------------------------------------

    @property
    def viewers(self) -> int:
        return int(struct.unpack_from("<I", self._buf, 4)[0])

    def add_viewer(self) -> None:
        """Count one more viewer: the worker encodes JPEGs while any are counted."""
        self._add_viewers(1)

    def remove_viewer(self) -> None:
        self._add_viewers(-1)

    def _add_viewers(self, n: int) -> None:
        with self._lock:
            struct.pack_into("<I", self._buf, 4, max(0, self.viewers + n))

    @contextlib.contextmanager
    def viewer(self) -> Iterator[None]:
        """Count one viewer for the duration of the block."""
        self.add_viewer()
        try:
            yield
        finally:
            self.remove_viewer()

    def latest(self, after_seq: int = 0) -> LiveImage | None:
        return self._live.read(after_seq)

    def request_preview(self, mode: int) -> int:
        with self._lock:
            req = (int(struct.unpack_from("<I", self._buf, 8)[0]) + 1) & 0xFFFF_FFFF or 1
            struct.pack_into("<II", self._buf, 8, req, mode)
        return req

    def preview(self, request_id: int) -> LiveImage | None:
        image = self._preview.read()
        return image if image is not None and image.tag == request_id else None

    # -- worker side -------------------------------------------------------------------------

    def publish(self, jpeg: bytes, width: int, height: int, at: float) -> None:
        self._live.write(jpeg, width, height, 0, at)

    def clear(self) -> None:
        """Withdraw the latest frame (live view no longer allowed)."""
        self._live.write(b"", 0, 0, 0, 0.0)

    def pending_preview(self) -> tuple[int, int] | None:
        """(request id, mode) of a preview request not answered yet."""
        req, mode = struct.unpack_from("<II", self._buf, 8)
        if req == 0:
            return None
        answered = self._preview.read()
        if answered is not None and answered.tag == req:
            return None
        return int(req), int(mode)

    def publish_preview(self, request_id: int, png: bytes, width: int, height: int) -> None:
        self._preview.write(png, width, height, request_id, time.time())

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        # Drop our references to the buffer first: SharedMemory.close() refuses while views
        # into it are alive.
        del self._live, self._preview
        self._buf.release()
        with contextlib.suppress(BufferError):
            self._shm.close()
        if self._owner:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()

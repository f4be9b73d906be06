"""Passthrough recording: the camera draws the plan's masks, vms checks them and records the
camera's H.264 as it comes (remuxed into the same fsynced, hashed, indexed segments; no decode
and no encode of what is stored).

Over 500 lines on purpose: `PassthroughWorker` is one class (a `CameraWorker` subclass, a
forkserver preload), and the rule that no packet is written or shown before a passing check
covers it is only checkable with its packet, check and flush steps read together.

Trust is never given. On connecting, the worker pushes the plan to the camera as Media2 masks
(`masking.incamera.camera_masks`, solid fill) and from then on decodes one keyframe at least
every `passthrough_verify_s` (the camera's keyframe interval is the floor) and checks it
(`MaskCheck`: every anonymised area in the mask colour, the kept area not). Packets are held in
memory from one passing check to the next and only then written: what reaches a segment file is
always covered by a passing check before and after it. So a segment is indexed `ok` as it is
finished, and what no passing check covers (the packets since the last one, when a check fails,
the stream drops or the worker stops) is written as its own `quarantined` segment: kept, never
played back or exported until re-masked by transcoding (`vms footage remask`).

A failed check, or a camera that cannot draw the plan (no Media2 masks, too few or too simple
masks, a codec we cannot store, keyframes too rare to check), stops passthrough at once: the
camera's record (`registry.passthrough`) says so, the worker exits with EXIT_PASSTHROUGH, and the
supervisor restarts the camera on the transcode path (or blocks it, per setting) until the plan
changes or someone asks to retry. After a reconnect the masks are not pushed again before the
first check: a camera that lost them (a firmware reset while it was away) fails that check.

Live view: while someone watches, every packet is decoded, and every frame published is checked
first: no frame reaches a viewer unchecked. The mask preview is drawn over the last frame that
passed.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import av

from masking import parse_plan
from masking.incamera import (
    CheckResult,
    MaskCheck,
    is_static,
)
from registry.passthrough import VERIFIED_WRITE_S
from vms.pipeline.config import WorkerConfig
from vms.pipeline.incamera import (
    CannotPassthrough,
    DbPassthroughRecord,
    KeyframeDecoder,
    PushedMasks,
    PushMasks,
    push_plan_masks,
)
from vms.pipeline.live import PREVIEW_RAW, LiveChannel
from vms.pipeline.onvif import OnvifError
from vms.pipeline.reader import Reader
from vms.pipeline.recorder import (
    MASKED_BY_CAMERA,
    OK,
    QUARANTINED,
    DiskFull,
    RecorderError,
    SegmentInfo,
    to_ms,
)
from vms.pipeline.source import DecodedFrame, StreamPacket
from vms.pipeline.status import CameraState, RecordingState, clean_error
from vms.pipeline.worker import (
    EXIT_PASSTHROUGH,
    EXIT_STALLED,
    CameraWorker,
    StatusSink,
    StopFlag,
)

logger = logging.getLogger(__name__)

# Codecs whose packets the MP4 segments can carry as they come.
STORABLE_CODECS = ("h264", "hevc")
# Packets held between checks are bounded: a camera whose keyframes are further apart than
# this cannot be verified often enough (the floor is max(3 checks, 10 s)).
MIN_HOLD_S = 10.0
# How often to retry putting the masks on a camera whose ONVIF service does not answer.
PUSH_RETRY_MAX_S = 30.0

# Status values of `registry.models.PassthroughStatus`, as the record stores them.
FAILED = "failed"
UNSUPPORTED = "unsupported"


@dataclass
class _Held:
    """A packet received since the last passing check, waiting for the next one."""

    packet: av.Packet[Any]
    wall: dt.datetime
    mono: float


class PassthroughWorker(CameraWorker):
    masked_by = MASKED_BY_CAMERA

    def __init__(
        self,
        config: WorkerConfig,
        *,
        status: StatusSink,
        control: Connection | None,
        stop: StopFlag,
        live: LiveChannel | None,
        index_factory: Callable[[WorkerConfig], Any] | None = None,
        push_masks: PushMasks = push_plan_masks,
    ) -> None:
        super().__init__(
            config, status=status, control=control, stop=stop, live=live,
            index_factory=index_factory,
        )  # fmt: skip
        # Packets, not frames: a few seconds of them (they are small) ride out a slow check.
        self.frames = queue.Queue(maxsize=max(64, config.frame_queue * 16))
        self.reader = Reader(config, self.frames, self.view, self._reader_stop, packets=True)
        self.plan = parse_plan(config.mask_plan)
        self._push_masks = push_masks
        self._store: DbPassthroughRecord | None = None
        self._pushed: PushedMasks | None = None
        self._check: MaskCheck | None = None
        self._size: tuple[int, int] | None = None
        self._pushed_at = 0.0
        self._push_retry_at = 0.0
        self._push_failures = 0
        self._template: Any = None
        self._decoder: KeyframeDecoder | None = None
        self._stream_started = False
        self._last_pts: int | None = None
        self._last_duration: int | None = None
        # A check passed on this connection and none failed since / ever since masks went on.
        self._verified = False
        self._ever_verified = False
        self._last_check = -math.inf
        self._last_keyframe: float | None = None
        self._gop = 0.0  # seconds between the camera's keyframes (moving average)
        self._checks = 0
        self._checks_unwritten = 0
        self._last_written = -math.inf
        self.verified_at: dt.datetime | None = None
        self._held: list[_Held] = []
        self._segment_started = 0.0
        self._ok_frame: av.VideoFrame | None = None
        self._relay_started = False
        self.quarantined = 0
        self.failure: tuple[str, str, str] | None = None  # (status, reason, detail)
        self._note: str | None = None
        # When the newest packet handled was read (the deadlines' clock).
        self._stream_now = 0.0
        # The camera's record is written off the main thread, in order: a busy database (many
        # cameras starting at once) must not stall the packets behind it.
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="passthrough-record")

    # -- life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        self.masker = self._build_masker()
        self._build_recorder()
        self._connect_relay()
        self._store = DbPassthroughRecord(self.index, cfg.camera_id, cfg.mask_plan_hash)
        code = 0
        if not is_static(self.plan):
            self._give_up(UNSUPPORTED, "plan_not_static", "the plan uses detectors")
        else:
            self.reader.start()
        try:
            while self.failure is None and not self.stop_flag.is_set():
                self._drain_control()
                try:
                    generation, item = self.frames.get(timeout=0.1)
                except queue.Empty:
                    pass
                else:
                    self._packet(generation, *item)
                self._serve_substream()
                if self.failure is None:
                    # In stream time: a main thread behind its queue (a slow disk or database)
                    # has not yet seen the keyframes that arrived meanwhile.
                    self._deadlines(self._stream_now)
                if self.failure is None and self._housekeeping():
                    code = EXIT_STALLED
                    break
            if self.failure is not None:
                code = EXIT_PASSTHROUGH
        finally:
            self._shutdown()
            self._report(time.monotonic(), CameraState.stopped, RecordingState.off, force=True)
        return code

    # -- packets -----------------------------------------------------------------------------

    def _packet(self, generation: int, item: StreamPacket, stream: Any) -> None:
        if generation != self._generation:
            self._connected(generation, stream)
            if self.failure is not None:
                return
        packet = item.packet
        self._stream_now = item.monotonic
        if not self._stream_started:
            # The first packets after connecting may carry no time (FFmpeg's probe): start at
            # the first keyframe that has one.
            if not (packet.is_keyframe and packet.pts is not None):
                return
            self._stream_started = True
        self._fix_times(packet)
        size = (int(stream.codec_context.width), int(stream.codec_context.height))
        if self._size != size and not self._push(size, item.monotonic):
            return
        decoder, check = self._decoder, self._check
        assert decoder is not None
        assert check is not None
        assert self._pushed is not None
        live = self.live
        # A live profile (substream) is masked by vms itself and needs no decoding here.
        watching = (
            live is not None
            and self.policy.may_view_live
            and live.viewers > 0
            and self._verified
            and not self._live_from_substream(item.monotonic)
        )
        # Issue 14: recipients of a sharing agreement watch through the RTSP relay.
        relaying = (
            self.relay is not None
            and self.policy.may_view_live
            and self.relay.wanted
            and self._verified
        )
        if packet.is_keyframe and (watching or relaying):
            decoder.continuous = True
        elif not (watching or relaying):
            decoder.continuous = False
        if packet.is_keyframe:
            self._keyframe_arrived(item.monotonic)
        key_due = packet.is_keyframe and (
            not self._verified
            # Check this keyframe unless the next one still falls within the interval: checks
            # are then at most `passthrough_verify_s` apart (or one keyframe interval, if longer).
            or item.monotonic - self._last_check
            >= self.config.passthrough_verify_s - 0.5 * self._gop
            or self._segment_due(item.monotonic)
        )
        frame = decoder.decode(packet) if (decoder.continuous or key_due) else None
        if key_due and frame is not None:
            self._keyframe_checked(check.verify_frame(frame, self._pushed.color), frame, item)
            if self.failure is not None:
                return
        if self._verified and self.recorder is not None and self._record_allowed(item.monotonic):
            self._held.append(_Held(packet, item.wall_time, item.monotonic))
        checked = key_due
        if frame is not None and watching and live is not None:
            checked = self._live(live, frame, item, checked=checked)
        if relaying and self.failure is None:
            self._relay(packet, frame, item, stream, checked=checked)
        elif self._relay_started and self.relay is not None:
            self._relay_started = False
            self.relay.idle()
        preview = live.pending_preview() if live is not None else None
        if preview is not None and live is not None and self._ok_frame is not None:
            bgr = self._ok_frame.to_ndarray(format="bgr24")
            # The camera's own masks are in the picture: raw here is raw of a checked frame.
            self._answer_preview(live, preview[0], bgr, raw=preview[1] == PREVIEW_RAW)

    def _keyframe_arrived(self, now: float) -> None:
        """Track the camera's keyframe interval (a moving average)."""
        if self._last_keyframe is not None:
            gap = now - self._last_keyframe
            if 0 < gap < 60:
                self._gop = gap if self._gop == 0 else 0.8 * self._gop + 0.2 * gap
        self._last_keyframe = now

    def _record_allowed(self, now: float) -> bool:
        return self.policy.may_record and now >= self._record_retry_at

    def _fix_times(self, packet: av.Packet[Any]) -> None:
        if packet.pts is None and self._last_pts is not None:
            packet.pts = self._last_pts + (self._last_duration or 0)
        if packet.dts is None:
            packet.dts = packet.pts
        if packet.pts is not None:
            self._last_pts = packet.pts
        if packet.duration:
            self._last_duration = packet.duration

    def _connected(self, generation: int, stream: Any) -> None:
        """A new connection: what is held was not checked to the end; the new stream is checked
        before anything of it is kept (masks are not pushed again: see the module docstring)."""
        self._end_recording_run()
        self._generation = generation
        self._stream_started = False
        self._last_pts = self._last_duration = None
        self._last_keyframe = None
        self._verified = False
        self._template = stream
        codec = str(stream.codec_context.name)
        if codec not in STORABLE_CODECS:
            self._give_up(
                UNSUPPORTED, "codec", f"the camera streams {codec}; passthrough stores "
                f"{' or '.join(STORABLE_CODECS)}",
            )  # fmt: skip
            return
        self._decoder = KeyframeDecoder(stream)

    def _push(self, size: tuple[int, int], now: float) -> bool:
        """Masks on the camera for this picture size; False while they are not (yet)."""
        if now < self._push_retry_at:
            return False
        try:
            pushed = self._push_masks(self.config, self.plan, *size)
        except CannotPassthrough as exc:
            self._give_up(UNSUPPORTED, exc.reason, str(exc))
            return False
        except OnvifError as exc:
            # Not the camera's verdict on masks, only that it cannot be asked now: try again.
            self._push_failures += 1
            delay = min(PUSH_RETRY_MAX_S, 2.0**self._push_failures)
            self._push_retry_at = now + delay
            self._note = clean_error(f"cannot put the masks on the camera: {exc}")
            logger.warning(
                "camera %s: %s; retry in %.0fs", self.config.camera_id, self._note, delay
            )
            return False
        self._push_failures = 0
        self._pushed = pushed
        self._size = size
        self._check = MaskCheck.build(self.plan, *size, covered=pushed.masks.covered(*size))
        self._pushed_at = now
        self._ever_verified = self._verified = False
        self._note = None
        logger.info(
            "camera %s: %d masks on the camera for %dx%d, checking keyframes",
            self.config.camera_id, len(pushed.tokens), *size,
        )  # fmt: skip
        self._write(lambda r: r.started(pushed))
        return True

    # -- checks ------------------------------------------------------------------------------

    def _keyframe_checked(
        self, result: CheckResult, frame: av.VideoFrame, at: StreamPacket
    ) -> None:
        self._last_check = at.monotonic
        if not result.ok:
            settling = not self._ever_verified and (
                at.monotonic - self._pushed_at < self.config.passthrough_settle_s
            )
            if settling:
                self._note = f"waiting for the camera to draw its masks ({result.describe()})"
                return
            self._give_up(FAILED, result.reason or "failed", result.describe())
            return
        first = not self._verified
        self._verified = self._ever_verified = True
        self._checks += 1
        self._checks_unwritten += 1
        self.verified_at = at.wall_time
        self._ok_frame = frame
        self._note = None
        # Everything held was between two passing checks: it goes to the segment now.
        self._flush(at)
        if first or at.monotonic - self._last_written >= VERIFIED_WRITE_S:
            checks, self._checks_unwritten = self._checks_unwritten, 0
            self._last_written = at.monotonic
            self._write(lambda r: r.verified(at.wall_time, checks))

    def _passes(self, frame: av.VideoFrame, where: str) -> bool:
        """Check a frame about to be shown; a failure ends passthrough like a keyframe's."""
        assert self._check is not None
        assert self._pushed is not None
        result = self._check.verify_frame(frame, self._pushed.color)
        if not result.ok:
            self._give_up(FAILED, result.reason or "failed", f"{where}: {result.describe()}")
            return False
        self._checks += 1
        return True

    def _live(
        self, live: LiveChannel, frame: av.VideoFrame, at: StreamPacket, checked: bool
    ) -> bool:
        """Publish a frame to viewers, checked first (a keyframe just checked is); whether this
        frame is checked now."""
        if not self._live_pacer.due(at.monotonic):
            return checked
        if not checked and not self._passes(frame, "live frame"):
            return False
        decoded = DecodedFrame(frame, at.wall_time, at.monotonic, 0, None)
        self._publish_jpeg(live, frame, decoded)
        self.frames_out += 1
        return True

    def _relay(
        self,
        packet: av.Packet[Any],
        frame: av.VideoFrame | None,
        at: StreamPacket,
        stream: Any,
        checked: bool,
    ) -> None:
        """Forward the camera's packet to the relay unchanged, but only once its own frame has
        passed the check: every frame a recipient decodes was checked. A frame that did not
        decode breaks the chain: the relay resumes at the next keyframe."""
        relay = self.relay
        assert relay is not None
        if frame is None or not (self._relay_started or packet.is_keyframe):
            self._relay_started = False
            return
        if not checked and not self._passes(frame, "relayed frame"):
            return
        relay.forward(
            bytes(packet),
            key=packet.is_keyframe,
            mono=at.monotonic,
            extradata=stream.codec_context.extradata,
        )
        self._relay_started = True

    def _deadlines(self, now: float) -> None:
        """A camera that never shows a checkable keyframe, or shows them too rarely, cannot be
        verified: that too ends passthrough."""
        cfg = self.config
        never = self._size is not None and not self._ever_verified
        if never and now - self._pushed_at > cfg.passthrough_settle_s + 2 * cfg.read_timeout_s:
            self._give_up(FAILED, "never_verified", self._note or "no keyframe passed the check")
            return
        hold = max(MIN_HOLD_S, 3 * cfg.passthrough_verify_s)
        if self._held and now - self._held[0].mono > hold:
            self._give_up(
                UNSUPPORTED, "keyframes_too_rare",
                f"no checkable keyframe for {now - self._held[0].mono:.0f}s; set the camera's "
                f"keyframe interval to at most {cfg.passthrough_verify_s:g}s",
            )  # fmt: skip

    # -- recording ---------------------------------------------------------------------------

    def _segment_due(self, now: float) -> bool:
        recorder = self.recorder
        return (
            recorder is not None
            and recorder.is_open
            and now - self._segment_started >= self.config.segment_seconds
        )

    def _flush(self, at: StreamPacket) -> None:
        """Write what is held (checked at both ends now); end the segment here if it is long
        enough (the next one starts with this keyframe: segments tile time)."""
        recorder = self.recorder
        if recorder is None:
            self._held.clear()
            return
        held, self._held = self._held, []
        try:
            for h in held:
                if not recorder.is_open:
                    self._segment_started = h.mono
                recorder.write_packet(h.packet, self._template, h.wall)
            if self._segment_due(at.monotonic):
                recorder.finish(end=to_ms(at.wall_time), wait=False, state=OK)
        except DiskFull as exc:
            self._record_failed(RecordingState.disk_full, f"disk full: {exc}")
            return
        except RecorderError as exc:
            self._record_failed(RecordingState.error, str(exc))
            return
        if held and self.recording_since is None:
            self.recording_since = recorder.segment_start
        if held:
            self._record_error = None
            self._recording_state = RecordingState.recording

    def _quarantine_held(self) -> None:
        """What is held was not covered by a passing check at its end: its own segment,
        quarantined (the segment before it ends where it starts)."""
        recorder = self.recorder
        held, self._held = self._held, []
        if recorder is None or not held:
            return
        try:
            if recorder.is_open:
                recorder.finish(end=to_ms(held[0].wall), wait=False, state=OK)
            for h in held:
                recorder.write_packet(h.packet, self._template, h.wall)
            if recorder.is_open:
                recorder.finish(wait=False, state=QUARANTINED)
                self.quarantined += 1
        except DiskFull as exc:
            self._record_failed(RecordingState.disk_full, f"disk full: {exc}")
        except RecorderError as exc:
            self._record_failed(RecordingState.error, str(exc))

    def _shutdown(self) -> None:
        # The record (a failure above all: the supervisor's fallback reads it) is written before
        # the worker's database engine goes.
        self._reader_stop.set()
        self._end_recording_run()
        self._writes.shutdown(wait=True)
        super()._shutdown()

    def _end_recording_run(self) -> None:
        self._quarantine_held()
        super()._end_recording_run()

    def _segment_done(self, info: SegmentInfo) -> None:
        # Footage a viewer can play ends with the last segment the checks cover.
        if info.state == OK:
            super()._segment_done(info)

    # -- giving up ---------------------------------------------------------------------------

    def _give_up(self, status: str, reason: str, detail: str) -> None:
        """Stop passthrough now: nothing more is shown or kept of this stream, what is held is
        quarantined, and the camera's record says why (the supervisor takes it from there)."""
        if self.failure is not None:
            return
        cfg = self.config
        text = clean_error(detail) or reason
        self.failure = (status, reason, text)
        self._verified = False
        if self.live is not None:
            self.live.clear()
        self._reader_stop.set()
        self._end_recording_run()
        if self.recorder is not None:
            # The quarantined segment must be in the index before the record says why.
            self._finalising(self.recorder.drain)
        logger.error(
            "camera %s: passthrough stopped (%s: %s); %d segment(s) quarantined",
            cfg.camera_id, reason, text, self.quarantined,
        )  # fmt: skip
        now, quarantined = dt.datetime.now(dt.UTC), self.quarantined
        self._write(lambda r: r.failed(status, reason, text, now, quarantined))

    def _write(self, step: Callable[[DbPassthroughRecord], None]) -> None:
        store = self._store
        if store is None:
            return
        try:
            self._writes.submit(self._write_now, store, step)
        except RuntimeError:  # shut down: the worker is ending, write it here
            self._write_now(store, step)

    def _write_now(
        self, store: DbPassthroughRecord, step: Callable[[DbPassthroughRecord], None]
    ) -> None:
        try:
            step(store)
        except Exception as exc:
            # The record is what makes the supervisor fall back; checks go on regardless, and a
            # camera that fails again is stopped again.
            logger.error(
                "camera %s: cannot write the passthrough record (%s)",
                self.config.camera_id, type(exc).__name__,
            )  # fmt: skip

    # -- status ------------------------------------------------------------------------------

    def _recording(self) -> RecordingState:
        state = super()._recording()
        if state in (RecordingState.waiting, RecordingState.recording) and not self._verified:
            return RecordingState.verifying
        if state is RecordingState.waiting and self._held:
            return RecordingState.recording
        return state

    def _failed_text(self) -> str | None:
        if self.failure is None:
            return None
        _, reason, detail = self.failure
        return detail if detail.startswith(reason) else f"{reason}: {detail}"

    def _report(
        self, now: float, state: CameraState, recording: RecordingState, force: bool = False
    ) -> None:
        # The camera's error line says where verification stands.
        failed = self._failed_text()
        self.mask_error = f"passthrough stopped: {failed}" if failed else self._note
        super()._report(now, state, recording, force)

    def _status_extra(self) -> dict[str, Any]:
        failed = self._failed_text()
        return {
            "recording_path": "passthrough",
            "passthrough_verified_at": self.verified_at,
            "passthrough_checks": self._checks,
            "passthrough_failed": failed,
            "quarantined_segments": self.quarantined,
        }

"""One camera, one child process: read -> mask -> live and/or record.

Over 500 lines on purpose: `CameraWorker` is the main thread of one camera process, and its
order (every frame masked before anything sees it, policy, live, record, watchdog) should be
read in one class; `PassthroughWorker` subclasses it, and the module is a forkserver preload
(`vms.pipeline.processes.PRELOAD`).

Threads inside the worker:

- the reader (`Reader`) opens the source with explicit timeouts, demuxes and decodes into a
  bounded queue (`frame_queue` frames, `put_nowait`, drops counted) and reconnects with
  backoff + jitter;
- with a live profile (an ONVIF substream), a second reader runs while someone watches live;
  its frames are masked on the main thread too (`vms.pipeline.substream`);
- the main thread masks every frame it takes before anything else sees it, publishes JPEGs
  while someone watches (and the policy allows), feeds the recorder while the policy allows,
  applies policy updates pushed by the supervisor, reports status, and is the stall watchdog:
  if the reader hangs inside native code past every timeout, the process exits and the
  supervisor starts a fresh one.

A camera in mode `live` never gets a recorder, a database engine or a data folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import logging.handlers
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import av
import cv2

from masking import Masker, MaskingError
from masking.tool import render_preview
from vms.pipeline.config import ANONYMISE_ALL, PolicyFlags, WorkerConfig
from vms.pipeline.frames import get_batch
from vms.pipeline.live import PREVIEW_RAW, FrameTooLarge, LiveChannel
from vms.pipeline.pacing import FramePacer
from vms.pipeline.reader import Reader, ReaderView
from vms.pipeline.recorder import (
    MASKED_BY_VMS,
    DiskFull,
    RecorderError,
    SegmentInfo,
    SegmentRecorder,
)
from vms.pipeline.recovery import recover
from vms.pipeline.relay_feed import RelayFeed
from vms.pipeline.source import DecodedFrame
from vms.pipeline.status import CameraState, RecordingState, WorkerStatus, clean_error
from vms.pipeline.substream import LiveStream, Substream, live_config

logger = logging.getLogger(__name__)

# Exit code of a worker whose reader hung beyond every timeout (the supervisor restarts it).
EXIT_STALLED = 75
# Exit code of a worker that stopped passthrough (failed check, unsupported camera): the
# supervisor restarts the camera at once, on whatever path its record now says.
EXIT_PASSTHROUGH = 76
# How often a worker retries segments the index did not take.
INDEX_RETRY_S = 5.0
EXIT_ERROR = 1


class StatusSink(Protocol):
    def put(self, obj: Any, block: bool = ..., timeout: float | None = ...) -> None: ...


class StopFlag(Protocol):
    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def wait(self, timeout: float | None = ...) -> bool: ...


# -- the worker ---------------------------------------------------------------------------------


class _Rate:
    """Frames per second over the last report interval."""

    def __init__(self) -> None:
        self._count = 0
        self._at = time.monotonic()
        self.value = 0.0

    def update(self, count: int, now: float) -> float:
        elapsed = now - self._at
        if elapsed >= 0.5:
            self.value = max(0.0, (count - self._count) / elapsed)
            self._count, self._at = count, now
        return self.value


class CameraWorker:
    # Who masks what this worker records (the passthrough worker records the camera's masks).
    masked_by = MASKED_BY_VMS

    def __init__(
        self,
        config: WorkerConfig,
        *,
        status: StatusSink,
        control: Connection | None,
        stop: StopFlag,
        live: LiveChannel | None,
        index_factory: Callable[[WorkerConfig], Any] | None = None,
    ) -> None:
        self.config = config
        self.policy = config.policy
        self.status_sink = status
        self.control = control
        self.stop_flag = stop
        self.live = live
        self._index_factory = index_factory or _db_index
        # (generation, DecodedFrame); the passthrough worker queues (generation, (packet, stream)).
        self.frames: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=config.frame_queue)
        self.view = ReaderView()
        self._reader_stop = threading.Event()
        self.reader = Reader(config, self.frames, self.view, self._reader_stop)
        self.recorder: SegmentRecorder | None = None
        self.index: Any = None
        self._dispose: Callable[[], None] | None = None
        self.masker: Masker | None = None
        self.relay: RelayFeed | None = None  # issue 14: masked H.264 to the RTSP relay
        # Live view from the camera's substream while someone watches (vms.pipeline.substream).
        sub_config = live_config(config)
        self.substream = Substream(sub_config, self._build_masker) if sub_config else None
        self.mask_error: str | None = None
        self.frames_out = 0
        self.mask_dropped = 0
        self._generation = 0
        self._idle = True
        self._live_pacer = FramePacer(self.config.live_fps)
        self._recording_state = RecordingState.off
        self._record_error: str | None = None
        self._record_retry_at = 0.0
        self.recorded_until: dt.datetime | None = None
        self.recording_since: dt.datetime | None = None
        self._in_rate = _Rate()
        self._out_rate = _Rate()
        self._last_report = 0.0
        self._index_retry = 0.0
        self._record_pacer = FramePacer(self.config.record_fps)
        self._last_reported: tuple[Any, ...] | None = None

    # -- set-up ------------------------------------------------------------------------------

    def _build_masker(self) -> Masker:
        cfg = self.config
        try:
            return Masker(cfg.mask_plan, models_dir=cfg.models_dir)
        except Exception as exc:
            # A plan that cannot even be loaded (bad file, missing detector model): show and
            # record nothing identifiable rather than nothing at all.
            self.mask_error = clean_error(f"mask plan unusable, everything anonymised: {exc}")
            logger.error("camera %s: %s", cfg.camera_id, self.mask_error)
            return Masker(ANONYMISE_ALL)

    def _build_recorder(self) -> None:
        cfg = self.config
        index, dispose = self._index_factory(cfg)
        self.index, self._dispose = index, dispose
        data_dir = Path(cfg.data_dir)
        recovery = recover(data_dir=data_dir, camera_id=cfg.camera_id, index=index)
        record = getattr(index, "record_recovery", None)
        if record is not None:
            try:
                record(cfg.camera_id, recovery)
            except Exception:
                logger.exception("camera %s: cannot audit crash recovery", cfg.camera_id)
        assert self.masker is not None
        self.recorder = SegmentRecorder(
            camera_id=cfg.camera_id,
            data_dir=data_dir,
            segment_seconds=cfg.segment_seconds,
            # The plan actually applied (the anonymise-all fallback if the camera's failed).
            mask_plan_hash=self.masker.plan_hash,
            index=index,
            preset=cfg.encoder_preset,
            crf=cfg.encoder_crf,
            threads=cfg.encoder_threads,
            fps_hint=cfg.record_fps or 25.0,
            on_segment=self._segment_done,
            masked_by=self.masked_by,
        )

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        self.masker = self._build_masker()
        if cfg.records:
            self._build_recorder()
        self._connect_relay()
        self.reader.start()
        code = 0
        try:
            while not self.stop_flag.is_set():
                self._drain_control()
                batch, gather_s = self._batching()
                for generation, decoded in get_batch(self.frames, batch, 0.1, gather_s):
                    self._process(generation, decoded)
                self._serve_substream()
                if self._housekeeping():
                    code = EXIT_STALLED
                    break
        finally:
            self._shutdown()
            # The last word: where this worker's footage ends (the supervisor starts a gap there).
            self._report(time.monotonic(), CameraState.stopped, RecordingState.off, force=True)
        return code

    def _batching(self) -> tuple[int, float]:
        """How many frames to take at once, and how long to let them gather: a batch while
        nobody watches live (recording alone tolerates the latency), one at a time otherwise."""
        size = self.config.frame_batch
        live = self.live
        watched = live is not None and (live.viewers > 0 or live.pending_preview() is not None)
        watched = watched or (self.relay is not None and self.relay.wanted)
        if size <= 1 or watched:
            return 1, 0.0
        step = 1.0 / (self.view.fps or 25.0)
        return size, (size - 0.5) * step

    def _connect_relay(self) -> None:
        cfg = self.config
        if cfg.relay_socket and cfg.mode != "recording":  # a recording-only camera never relays
            self.relay = RelayFeed.connect(
                cfg.relay_socket, cfg.camera_id, gop_frames=cfg.relay_gop_frames
            )

    def _drain_control(self) -> None:
        if self.control is None:
            return
        try:
            while self.control.poll():
                message = self.control.recv()
                if isinstance(message, PolicyFlags):
                    self._apply_policy(message)
        except (EOFError, OSError):
            # The supervisor is gone: stop rather than run unsupervised.
            self.stop_flag.set()

    def _apply_policy(self, policy: PolicyFlags) -> None:
        old, self.policy = self.policy, policy
        if old.may_record and not policy.may_record:
            logger.info(
                "camera %s: recording no longer allowed, stopping it", self.config.camera_id
            )
            self._end_recording_run()
        if old.may_view_live and not policy.may_view_live:
            if self.live is not None:
                self.live.clear()
            if self.substream is not None:
                self.substream.stop()

    def _process(self, generation: int, decoded: DecodedFrame) -> None:
        assert self.masker is not None
        if generation != self._generation:
            # A new connection: its timestamps restart, and detections of the old one are stale.
            self._end_recording_run()
            self._generation = generation
            self.masker.reset()
        now = decoded.monotonic
        live = self.live
        want_live = (
            live is not None
            and self.policy.may_view_live
            and live.viewers > 0
            and self._live_pacer.due(now)
            and not self._live_from_substream(now)
        )
        preview = live.pending_preview() if live is not None else None
        want_record = (
            self.recorder is not None
            and self.policy.may_record
            and now >= self._record_retry_at
            and self._record_due(now)
        )
        # Issue 14: only while a recipient watches through the relay, and live view is allowed.
        want_relay = self.relay is not None and self.policy.may_view_live and self.relay.wanted
        if not (want_live or preview or want_record or want_relay):
            self._idle = True
            return
        if self._idle:
            # Resuming after frames nobody needed: run detectors on this very frame.
            self.masker.reset()
            self._idle = False
        raw = None
        if preview is not None and preview[1] == PREVIEW_RAW:
            raw = decoded.frame.to_ndarray(format="bgr24")
        try:
            masked = self.masker.mask_frame(decoded.frame)
        except MaskingError:
            self.mask_dropped += 1
            return
        self.frames_out += 1
        if preview is not None and live is not None:
            if raw is not None:
                self._answer_preview(live, preview[0], raw, raw=True)
            else:
                self._answer_preview(live, preview[0], masked.to_ndarray(format="bgr24"), raw=False)
        if want_live and live is not None:
            self._publish_jpeg(live, masked, decoded)
        if want_record:
            self._record(masked, decoded)
        if want_relay and self.relay is not None:
            self.relay.feed_safely(masked, decoded.monotonic)

    def _live_from_substream(self, now: float) -> bool:
        """Whether viewers get the substream's frames (else the main stream's, masked alike)."""
        return self.substream is not None and self.substream.delivering(now)

    def _serve_substream(self) -> None:
        """Run the substream while someone may and does watch, and publish its newest frame."""
        sub, live = self.substream, self.live
        if sub is None:
            return
        watched = live is not None and self.policy.may_view_live and live.viewers > 0
        sub.want(watched, time.monotonic())
        if not watched or live is None:
            return
        decoded = sub.latest()
        if decoded is None or not self._live_pacer.due(decoded.monotonic):
            return
        masked = sub.mask(decoded)
        if masked is not None:
            self._publish_jpeg(live, masked, decoded)

    def _live_stream(self, now: float) -> LiveStream | None:
        """Which stream viewers see now (None: nobody watches)."""
        live = self.live
        if live is None or live.viewers == 0 or not self.policy.may_view_live:
            return None
        return "substream" if self._live_from_substream(now) else "main"

    def _record_due(self, now: float) -> bool:
        """Whether this frame belongs to the recording profile's frame rate (every frame when
        the camera records at the source's rate). Frames left out are never masked or encoded."""
        return self._record_pacer.take(now)

    def _recorded_size(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The frame at the recording profile's size (masked first, at full size)."""
        height = self.config.record_height
        if height is None or frame.height <= height:
            return frame
        width = max(2, round(frame.width * height / frame.height / 2) * 2)
        return frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")

    def _publish_jpeg(self, live: LiveChannel, frame: av.VideoFrame, decoded: DecodedFrame) -> None:
        self._live_pacer.took(decoded.monotonic)
        image = frame.to_ndarray(format="bgr24")
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            return
        try:
            live.publish(buf.tobytes(), frame.width, frame.height, decoded.wall_time.timestamp())
        except FrameTooLarge:
            logger.warning("camera %s: JPEG too large for the live channel", self.config.camera_id)

    def _answer_preview(self, live: LiveChannel, request: int, bgr: Any, raw: bool) -> None:
        """Draw the plan's zones over the raw frame (`raw`) or over the masked one."""
        assert self.masker is not None
        try:
            picture = render_preview(bgr, self.masker.plan, masked=not raw)
        except Exception as exc:
            logger.warning("camera %s: preview failed: %s", self.config.camera_id, exc)
            return
        ok, buf = cv2.imencode(".png", picture)
        if ok:
            with contextlib.suppress(FrameTooLarge):
                live.publish_preview(request, buf.tobytes(), bgr.shape[1], bgr.shape[0])

    def _record(self, frame: av.VideoFrame, decoded: DecodedFrame) -> None:
        recorder = self.recorder
        assert recorder is not None
        try:
            recorder.write(self._recorded_size(frame), decoded.wall_time, decoded.monotonic)
        except DiskFull as exc:
            self._record_failed(RecordingState.disk_full, f"disk full: {exc}")
            return
        except RecorderError as exc:
            self._record_failed(RecordingState.error, str(exc))
            return
        if self.recording_since is None:
            self.recording_since = recorder.segment_start
        self._record_error = None
        self._recording_state = RecordingState.recording

    def _record_failed(self, state: RecordingState, message: str) -> None:
        cfg = self.config
        self._recording_state = state
        self._record_error = clean_error(message)
        self._record_retry_at = time.monotonic() + cfg.disk_full_retry_s
        self.recording_since = None
        logger.error(
            "camera %s: recording stopped (%s), retrying in %.0fs",
            cfg.camera_id,
            self._record_error,
            cfg.disk_full_retry_s,
        )

    def _segment_done(self, info: SegmentInfo) -> None:
        self.recorded_until = info.end

    def _end_recording_run(self) -> None:
        """Finalise the segment in progress and wait until it is indexed: the next frames
        start a new recording run, and the status that follows says where footage ends."""
        if self.recorder is not None and self.recorder.is_open:
            self._finalising(self.recorder.finish)
        self.recording_since = None

    def _finalising(self, step: Callable[[], object]) -> None:
        try:
            step()
        except DiskFull as exc:
            self._record_failed(RecordingState.disk_full, f"disk full: {exc}")
        except RecorderError as exc:
            self._record_failed(RecordingState.error, str(exc))

    # -- state, watchdog, status -------------------------------------------------------------

    def _camera_state(self, now: float) -> CameraState:
        with self.view.lock:
            state = self.view.state
            last = self.view.last_frame_mono
        stale = last is not None and now - last > self.config.stall_seconds
        return CameraState.stalled if state is CameraState.streaming and stale else state

    def _housekeeping(self) -> bool:
        """Per-iteration checks; True when the worker must exit because the reader hung."""
        cfg = self.config
        now = time.monotonic()
        state = self._camera_state(now)
        if state is not CameraState.streaming:
            self._end_recording_run()
        if self.recorder is not None:
            # A segment finalised in the background may have failed (disk full, database).
            self._finalising(self.recorder.raise_failures)
            if self.recorder.index_pending and now - self._index_retry >= INDEX_RETRY_S:
                self._index_retry = now
                self.recorder.retry_index()
        recording = self._recording()
        self._report(now, state, recording)
        with self.view.lock:
            busy_since = self.view.busy_since
        # Opening an ONVIF source may take three open timeouts (probe, stream URI, RTSP).
        hung_after = cfg.stall_seconds + 3 * cfg.open_timeout_s + cfg.read_timeout_s
        if busy_since is not None and now - busy_since > hung_after:
            logger.error(
                "camera %s: reader stuck for %.0fs despite timeouts; restarting the worker",
                cfg.camera_id,
                now - busy_since,
            )
            with self.view.lock:
                self.view.state = CameraState.stalled
                self.view.last_error = f"no frame and no timeout for {now - busy_since:.0f}s"
            self._report(now, CameraState.stalled, recording, force=True)
            return True
        return False

    def _recording(self) -> RecordingState:
        if self.recorder is None or not self.policy.may_record:
            return RecordingState.off
        if (
            self._recording_state in (RecordingState.disk_full, RecordingState.error)
            and time.monotonic() < self._record_retry_at
        ):
            return self._recording_state
        return RecordingState.recording if self.recorder.is_open else RecordingState.waiting

    def _report(
        self, now: float, state: CameraState, recording: RecordingState, force: bool = False
    ) -> None:
        # The live channel is closed by the time of the last report (stopped): nobody watches.
        live_stream = self._live_stream(now) if state is not CameraState.stopped else None
        key = (state, recording, self._record_error, self.recorded_until, live_stream)
        if (
            not force
            and key == self._last_reported
            and now - self._last_report < (self.config.status_interval_s)
        ):
            return
        with self.view.lock:
            v = self.view
            frames_in, dropped, reconnects = v.frames_in, v.dropped, v.reconnects
            width, height, last_wall = v.width, v.height, v.last_frame_wall
            reader_error = v.last_error
        sub_error = self.substream.error() if self.substream is not None and live_stream else None
        sub_dropped = self.substream.dropped if self.substream is not None else 0
        notes = (self._record_error, self.mask_error, self._index_note(), sub_error)
        errors = [e for e in notes if e]
        if state is not CameraState.streaming and reader_error:
            errors.insert(0, reader_error)
        elif not errors and reader_error:
            errors.append(reader_error)
        status = WorkerStatus(
            camera_id=self.config.camera_id,
            pid=os.getpid(),
            state=state,
            recording=recording,
            width=width,
            height=height,
            input_fps=round(self._in_rate.update(frames_in, now), 2),
            output_fps=round(self._out_rate.update(self.frames_out, now), 2),
            frames_in=frames_in,
            frames_out=self.frames_out,
            dropped_frames=dropped + self.mask_dropped + sub_dropped,
            reconnects=reconnects,
            segments_written=self.recorder.segments_written if self.recorder else 0,
            mask_fail_closed=self.masker.stats.fail_closed if self.masker else 0,
            last_frame_at=last_wall,
            last_error=clean_error(" | ".join(errors)) if errors else None,
            recorded_until=self.recorded_until,
            recording_since=self.recording_since,
            live_stream=live_stream,
            **self._status_extra(),
        )
        try:
            self.status_sink.put(status, block=False)
        except (queue.Full, OSError, ValueError):
            return
        self._last_report = now
        self._last_reported = key

    def _status_extra(self) -> dict[str, Any]:
        """More status fields (the passthrough worker's verification)."""
        return {}

    def _index_note(self) -> str | None:
        pending = self.recorder.index_pending if self.recorder is not None else 0
        if not pending:
            return None
        return (
            f"{pending} finished segment(s) kept on disk, waiting for the footage index "
            f"({self.recorder.index_error if self.recorder else ''}); indexed when it answers"
        )

    def _shutdown(self) -> None:
        cfg = self.config
        self._reader_stop.set()
        self._end_recording_run()
        if self.recorder is not None:
            self._finalising(self.recorder.close)
        if self._dispose is not None:
            self._dispose()
        if self.live is not None:
            self.live.close()
        if self.relay is not None:
            self.relay.close()
        if self.substream is not None:
            self.substream.stop(join_timeout=cfg.open_timeout_s + cfg.read_timeout_s)
        self.reader.join(timeout=cfg.open_timeout_s + cfg.read_timeout_s)


def camera_worker(
    config: WorkerConfig,
    *,
    status: StatusSink,
    control: Connection | None,
    stop: StopFlag,
    live: LiveChannel | None,
    index_factory: Callable[[WorkerConfig], Any] | None = None,
) -> CameraWorker:
    """The worker for a camera's recording path: transcode, or passthrough."""
    if config.recording_path == "passthrough":
        from vms.pipeline.passthrough import PassthroughWorker

        return PassthroughWorker(
            config,
            status=status,
            control=control,
            stop=stop,
            live=live,
            index_factory=index_factory,
        )
    return CameraWorker(
        config, status=status, control=control, stop=stop, live=live, index_factory=index_factory
    )


def _db_index(config: WorkerConfig) -> tuple[Any, Callable[[], None]]:
    from vms.core.db import make_engine, make_sessionmaker
    from vms.pipeline.index import DbSegmentIndex

    engine = make_engine(config.db_url)
    return DbSegmentIndex(make_sessionmaker(engine), config.organisation_id), engine.dispose


# -- process entry point ------------------------------------------------------------------------


def run_worker(
    config: WorkerConfig,
    status: Any,
    control: Connection,
    stop: Any,
    live_name: str | None,
    log_level: int = logging.INFO,
    log_queue: Any = None,
) -> None:
    """Target of the camera's child process."""
    # Ctrl-C reaches the whole process group; the supervisor decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    root = logging.getLogger()
    root.setLevel(log_level)
    if log_queue is not None:
        # Records go to the server's own logging set-up (handlers, format, capture in tests).
        root.handlers[:] = [logging.handlers.QueueHandler(log_queue)]
    else:
        logging.basicConfig(format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    # Cameras, not OpenCV's thread pool, fill the cores.
    cv2.setNumThreads(1)
    # Everything imported so far lives as long as the process: keep the garbage collector from
    # walking it (shorter pauses) and from touching pages shared with the forkserver.
    gc.freeze()
    live = LiveChannel.attach(live_name) if live_name else None
    try:
        code = camera_worker(config, status=status, control=control, stop=stop, live=live).run()
    except Exception:
        logger.exception("camera %s: worker failed", config.camera_id)
        code = EXIT_ERROR
    logging.shutdown()
    for q in (status, log_queue):
        if q is not None:
            _flush(q)
    sys.exit(code)


def _flush(q: Any, timeout: float = 2.0) -> None:
    """Deliver what is queued for the supervisor, but never let a supervisor that stopped
    reading keep this process from exiting."""
    try:
        q.close()
        flusher = threading.Thread(target=q.join_thread, daemon=True)
        flusher.start()
        flusher.join(timeout)
        if flusher.is_alive():
            q.cancel_join_thread()
    except (AttributeError, OSError, ValueError):
        pass

"""One camera, one child process: read -> mask -> live and/or record.

Threads inside the worker:

- the reader (`Reader`) opens the source with explicit timeouts, demuxes and decodes into a
  bounded queue (2 frames, `put_nowait`, drops counted) and reconnects with backoff + jitter;
- the main thread masks every frame it takes before anything else sees it, publishes JPEGs
  while someone watches (and the policy allows), feeds the recorder while the policy allows,
  applies policy updates pushed by the supervisor, reports status, and is the stall watchdog:
  if the reader hangs inside native code past every timeout, the process exits and the
  supervisor starts a fresh one.

A camera in mode `live` never gets a recorder, a database engine or a data folder.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

import av
import cv2

from masking import Masker, MaskingError
from masking.tool import render_preview
from vms.pipeline.config import ANONYMISE_ALL, PolicyFlags, SourceSpec, WorkerConfig
from vms.pipeline.live import PREVIEW_RAW, FrameTooLarge, LiveChannel
from vms.pipeline.recorder import DiskFull, RecorderError, SegmentInfo, SegmentRecorder, recover
from vms.pipeline.restart import Backoff
from vms.pipeline.source import DecodedFrame, SourceConfig, SourceError, SourceTimeout, open_config
from vms.pipeline.status import CameraState, RecordingState, WorkerStatus, clean_error

logger = logging.getLogger(__name__)

# Exit code of a worker whose reader hung beyond every timeout (the supervisor restarts it).
EXIT_STALLED = 75
EXIT_ERROR = 1


class StatusSink(Protocol):
    def put(self, obj: Any, block: bool = ..., timeout: float | None = ...) -> None: ...


class StopFlag(Protocol):
    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def wait(self, timeout: float | None = ...) -> bool: ...


# -- reader -------------------------------------------------------------------------------------


@dataclass
class ReaderView:
    """What the reader thread tells the main thread (guarded by `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    state: CameraState = CameraState.starting
    last_error: str | None = None
    reconnects: int = 0
    frames_in: int = 0
    dropped: int = 0
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    generation: int = 0
    last_frame_mono: float | None = None
    last_frame_wall: dt.datetime | None = None
    # When the reader last came back from a blocking call; None while it sleeps on purpose.
    busy_since: float | None = None


def resolve_onvif_url(spec: SourceSpec, timeout: float) -> str:
    """The RTSP URL (with credentials) of the configured or best ONVIF profile."""
    from vms.pipeline import onvif

    async def resolve() -> str:
        host, port = spec.onvif_host or "", spec.onvif_port or 80
        user, password = spec.username or "", spec.password or ""
        token = spec.profile_token
        if token is None:
            found = await onvif.probe(host, port, user, password, timeout=timeout)
            token = onvif.choose_profile(found).token
        return await onvif.resolve_stream_uri(host, port, user, password, token, timeout=timeout)

    return asyncio.run(resolve())


class Reader(threading.Thread):
    def __init__(
        self,
        config: WorkerConfig,
        frames: queue.Queue[tuple[int, DecodedFrame]],
        view: ReaderView,
        stop: threading.Event,
        resolve_onvif: Callable[[SourceSpec, float], str] = resolve_onvif_url,
    ) -> None:
        super().__init__(name=f"reader-{config.camera_id}", daemon=True)
        self.config = config
        self.frames = frames
        self.view = view
        self.stop = stop
        self._resolve_onvif = resolve_onvif
        self.backoff = Backoff(
            initial=config.reconnect_initial_s,
            maximum=config.reconnect_max_s,
            healthy_after=max(10.0, config.stall_seconds),
        )

    def _url(self) -> str:
        spec = self.config.source
        if spec.kind == "onvif":
            return self._resolve_onvif(spec, self.config.open_timeout_s)
        if not spec.url:
            raise SourceError(f"camera {self.config.camera_id} has no source URL or path")
        return spec.url

    def run(self) -> None:
        cfg = self.config
        while not self.stop.is_set():
            attempt = time.monotonic()
            self._set(busy_since=attempt)
            state, message = CameraState.reconnecting, "source ended"
            try:
                source_config = SourceConfig(
                    self._url(),
                    open_timeout=cfg.open_timeout_s,
                    read_timeout=cfg.read_timeout_s,
                    realtime=cfg.source.realtime,
                    loop=cfg.source.loop,
                )
                with open_config(source_config) as source:
                    with self.view.lock:
                        self.view.generation += 1
                        self.view.width, self.view.height = source.width, source.height
                        self.view.fps = source.fps
                        generation = self.view.generation
                    for decoded in source.frames():
                        self._frame(generation, decoded)
                        if self.stop.is_set():
                            return
            except SourceTimeout as exc:
                state, message = CameraState.stalled, str(exc)
            except SourceError as exc:
                message = str(exc)
            except Exception as exc:
                message = _describe_error(exc)
                if not _is_onvif_error(exc):
                    logger.exception("camera %s: reader failed", cfg.camera_id)
            if self.stop.is_set():
                return
            self.backoff.ran_for(time.monotonic() - attempt)
            delay = self.backoff.failed()
            message = clean_error(message) or "source failed"
            logger.info(
                "camera %s: %s; retrying in %.1fs", cfg.camera_id, message, delay
            )  # fmt: skip
            with self.view.lock:
                self.view.state = state
                self.view.last_error = message
                self.view.busy_since = None
            if self.stop.wait(delay):
                return
            with self.view.lock:
                self.view.reconnects += 1

    def _frame(self, generation: int, decoded: DecodedFrame) -> None:
        now = decoded.monotonic
        with self.view.lock:
            self.view.state = CameraState.streaming
            self.view.frames_in += 1
            self.view.last_frame_mono = now
            self.view.last_frame_wall = decoded.wall_time
            self.view.busy_since = now
            self.view.width, self.view.height = decoded.frame.width, decoded.frame.height
        try:
            self.frames.put_nowait((generation, decoded))
        except queue.Full:
            with self.view.lock:
                self.view.dropped += 1

    def _set(self, **values: Any) -> None:
        with self.view.lock:
            for key, value in values.items():
                setattr(self.view, key, value)


def _is_onvif_error(exc: BaseException) -> bool:
    return type(exc).__module__ == "vms.pipeline.onvif"


def _describe_error(exc: BaseException) -> str:
    if _is_onvif_error(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


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
        self.frames: queue.Queue[tuple[int, DecodedFrame]] = queue.Queue(maxsize=config.frame_queue)
        self.view = ReaderView()
        self._reader_stop = threading.Event()
        self.reader = Reader(config, self.frames, self.view, self._reader_stop)
        self.recorder: SegmentRecorder | None = None
        self._dispose: Callable[[], None] | None = None
        self.masker: Masker | None = None
        self.mask_error: str | None = None
        self.frames_out = 0
        self.mask_dropped = 0
        self._generation = 0
        self._idle = True
        self._last_jpeg = 0.0
        self._recording_state = RecordingState.off
        self._record_error: str | None = None
        self._record_retry_at = 0.0
        self.recorded_until: dt.datetime | None = None
        self.recording_since: dt.datetime | None = None
        self._in_rate = _Rate()
        self._out_rate = _Rate()
        self._last_report = 0.0
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
        self._dispose = dispose
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
            on_segment=self._segment_done,
        )

    # -- main loop ---------------------------------------------------------------------------

    def run(self) -> int:
        cfg = self.config
        self.masker = self._build_masker()
        if cfg.records:
            self._build_recorder()
        self.reader.start()
        code = 0
        try:
            while not self.stop_flag.is_set():
                self._drain_control()
                try:
                    generation, decoded = self.frames.get(timeout=0.1)
                except queue.Empty:
                    pass
                else:
                    self._process(generation, decoded)
                if self._housekeeping():
                    code = EXIT_STALLED
                    break
        finally:
            self._shutdown()
            # The last word: where this worker's footage ends (the supervisor starts a gap there).
            self._report(time.monotonic(), CameraState.stopped, RecordingState.off, force=True)
        return code

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
        if old.may_view_live and not policy.may_view_live and self.live is not None:
            self.live.clear()

    def _process(self, generation: int, decoded: DecodedFrame) -> None:
        cfg = self.config
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
            and now - self._last_jpeg >= 1.0 / cfg.live_fps
        )
        preview = live.pending_preview() if live is not None else None
        want_record = (
            self.recorder is not None and self.policy.may_record and now >= self._record_retry_at
        )
        if not (want_live or preview or want_record):
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
            masked = self.masker.apply_yuv420(decoded.frame)
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

    def _publish_jpeg(self, live: LiveChannel, frame: av.VideoFrame, decoded: DecodedFrame) -> None:
        self._last_jpeg = decoded.monotonic
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
            recorder.write(frame, decoded.wall_time, decoded.monotonic)
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
        key = (state, recording, self._record_error, self.recorded_until)
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
        errors = [e for e in (self._record_error, self.mask_error) if e]
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
            dropped_frames=dropped + self.mask_dropped,
            reconnects=reconnects,
            segments_written=self.recorder.segments_written if self.recorder else 0,
            mask_fail_closed=self.masker.stats.fail_closed if self.masker else 0,
            last_frame_at=last_wall,
            last_error=clean_error(" | ".join(errors)) if errors else None,
            recorded_until=self.recorded_until,
            recording_since=self.recording_since,
        )
        try:
            self.status_sink.put(status, block=False)
        except (queue.Full, OSError, ValueError):
            return
        self._last_report = now
        self._last_reported = key

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
        self.reader.join(timeout=cfg.open_timeout_s + cfg.read_timeout_s)


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
        code = CameraWorker(config, status=status, control=control, stop=stop, live=live).run()
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

"""Pure decisions of the pipeline, without processes or IO: backoff, restart budget, recording
gaps, config changes, error text."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from vms.core.errors import Unauthorized
from vms.pipeline import tickets
from vms.pipeline.config import PolicyFlags, SourceSpec, WorkerConfig
from vms.pipeline.gaps import (
    CAMERA_DOWN,
    DISK_FULL,
    POLICY,
    WORKER_CRASHED,
    CloseGap,
    GapTracker,
    Observation,
    OpenGap,
    not_recording_reason,
)
from vms.pipeline.restart import Backoff, RestartBudget, backoff_delay
from vms.pipeline.status import CameraState, RecordingState, clean_error

T0 = dt.datetime(2025, 5, 1, 12, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


# -- backoff and budget ---------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_caps() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, initial=1.0, maximum=30.0, rng=rng) for n in range(1, 9)]
    bases = [1, 2, 4, 8, 16, 30, 30, 30]
    for delay, base in zip(delays, bases, strict=True):
        assert base / 2 <= delay <= base
    assert backoff_delay(0, initial=1.0, maximum=30.0) == 0.0


def test_backoff_jitter_spreads_a_fleet() -> None:
    rng = random.Random(7)
    delays = {round(backoff_delay(5, initial=1.0, maximum=30.0, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40  # cameras that failed together do not retry together


def test_backoff_resets_after_a_healthy_run() -> None:
    b = Backoff(initial=1.0, maximum=60.0, healthy_after=30.0, rng=random.Random(0))
    for _ in range(5):
        b.failed()
    assert b.failures == 5
    b.ran_for(5.0)
    assert b.failures == 5
    b.ran_for(31.0)
    assert b.failures == 0
    assert b.failed() <= 1.0


def test_restart_budget_allows_limit_per_window() -> None:
    budget = RestartBudget(limit=3, window=60.0)
    for t in (0.0, 1.0, 2.0):
        assert budget.allowed(t)
        budget.spend(t)
    assert not budget.allowed(30.0)
    assert budget.next_allowed_at(30.0) == 60.0
    assert budget.allowed(60.0)  # the first restart left the window
    assert budget.used(61.5) == 1


# -- gaps -----------------------------------------------------------------------------------------


def obs(**kw: object) -> Observation:
    values: dict[str, object] = {"expects_recording": True, "recording": False, "reason": None}
    values.update(kw)
    return Observation(**values)  # type: ignore[arg-type]


def test_gap_opens_at_the_end_of_the_last_segment_and_closes_at_the_next_start() -> None:
    g = GapTracker()
    assert g.step(obs(recording=True), T0) == []
    opened = g.step(
        obs(reason=CAMERA_DOWN, detail="refused", recorded_until=T0 + 2 * S), T0 + 5 * S
    )
    assert opened == [OpenGap(T0 + 2 * S, CAMERA_DOWN, "refused")]
    assert g.step(obs(reason=CAMERA_DOWN, detail="refused"), T0 + 6 * S) == []
    closed = g.step(obs(recording=True, recording_since=T0 + 9 * S), T0 + 10 * S)
    assert closed == [CloseGap(T0 + 9 * S)]
    assert g.step(obs(recording=True), T0 + 11 * S) == []


def test_gap_reason_change_opens_a_new_gap_and_no_opinion_keeps_the_old() -> None:
    g = GapTracker()
    g.step(obs(reason=CAMERA_DOWN), T0)
    assert g.step(obs(reason=None), T0 + S) == []  # a worker still starting says nothing
    assert g.step(obs(reason=POLICY, detail="basis revoked"), T0 + 2 * S) == [
        OpenGap(T0 + 2 * S, POLICY, "basis revoked")
    ]


def test_live_only_camera_owes_no_footage() -> None:
    g = GapTracker()
    assert g.step(obs(expects_recording=False, reason=CAMERA_DOWN), T0) == []
    g2 = GapTracker()
    g2.step(obs(reason=POLICY), T0)
    # Switched to live-only: the open gap ends, no new one starts.
    assert g2.step(obs(expects_recording=False), T0 + S) == [CloseGap(T0 + S)]
    assert g2.step(obs(expects_recording=False), T0 + 2 * S) == []


def test_recorded_until_in_the_future_is_not_trusted() -> None:
    g = GapTracker()
    assert g.step(obs(reason=CAMERA_DOWN, recorded_until=T0 + 60 * S), T0) == [
        OpenGap(T0, CAMERA_DOWN, None)
    ]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"policy": PolicyFlags(True, False, ("basis revoked",))}, (POLICY, "basis revoked")),
        ({"crashed": True, "worker_alive": False}, (WORKER_CRASHED, "boom")),
        ({"recording": RecordingState.disk_full}, (DISK_FULL, "boom")),
        ({"state": CameraState.reconnecting}, (CAMERA_DOWN, "boom")),
        ({"state": CameraState.stalled}, (CAMERA_DOWN, "boom")),
        ({"state": CameraState.starting}, (None, None)),
        ({"state": CameraState.streaming, "recording": RecordingState.waiting}, (None, None)),
    ],
)
def test_not_recording_reason(kwargs: dict[str, object], expected: tuple[str | None, ...]) -> None:
    values: dict[str, object] = {
        "policy": PolicyFlags(True, True),
        "state": CameraState.streaming,
        "recording": RecordingState.recording,
        "worker_alive": True,
        "crashed": False,
        "last_error": "boom",
    }
    values.update(kwargs)
    assert not_recording_reason(**values) == expected  # type: ignore[arg-type]


# -- config and text ------------------------------------------------------------------------------


def _config(**kw: object) -> WorkerConfig:
    values: dict[str, object] = {
        "camera_id": 1,
        "organisation_id": 1,
        "mode": "live_and_recording",
        "source": SourceSpec(kind="rtsp", url="rtsp://admin:hunter22@cam/x"),
        "mask_plan": None,
        "mask_plan_hash": None,
        "policy": PolicyFlags(True, True),
        "data_dir": "/data",
        "db_url": "postgresql+psycopg://vms:dbsecret@db/vms",
    }
    values.update(kw)
    return WorkerConfig(**values)  # type: ignore[arg-type]


def test_policy_change_alone_does_not_restart_a_worker() -> None:
    a = _config()
    assert a.restart_key() == a.with_policy(PolicyFlags(False, False)).restart_key()
    assert a.restart_key() != _config(mode="live").restart_key()
    assert a.restart_key() != _config(mask_plan_hash="x").restart_key()
    assert a.restart_key() != dataclasses.replace(a, segment_seconds=2.0).restart_key()


def test_config_repr_holds_no_secrets() -> None:
    text = repr(_config())
    assert "hunter22" not in text
    assert "dbsecret" not in text
    assert _config().source.describe() == "rtsp://***@cam/x"


def test_clean_error_scrubs_and_bounds() -> None:
    assert clean_error("failed rtsp://u:p@h/x\nagain") == "failed rtsp://***@h/x again"
    assert len(clean_error("x" * 2000) or "") == 500
    assert clean_error(None) is None


# -- live-view tickets ----------------------------------------------------------------------------


def test_ticket_names_user_token_and_camera_and_expires() -> None:
    secret = b"k" * 32
    ticket, expires = tickets.issue(secret, user_id=5, camera_id=9, token_id=77, now=T0)
    assert expires == T0 + tickets.TTL
    claims = tickets.verify(secret, ticket, camera_id=9, now=T0 + 59 * S)
    assert (claims.user_id, claims.token_id, claims.camera_id) == (5, 77, 9)
    other, _ = tickets.issue(secret, user_id=5, camera_id=9, token_id=77, now=T0)
    assert tickets.verify(secret, other, camera_id=9, now=T0).nonce != claims.nonce
    with pytest.raises(Unauthorized, match="expired"):
        tickets.verify(secret, ticket, camera_id=9, now=T0 + 60 * S)
    with pytest.raises(Unauthorized, match="another camera"):
        tickets.verify(secret, ticket, camera_id=10, now=T0)
    with pytest.raises(Unauthorized, match="invalid"):
        tickets.verify(b"x" * 32, ticket, camera_id=9, now=T0)
    sig = ticket.split(".")[1]
    forged = tickets._b64(b"6:9:77:99999999999:" + claims.nonce.encode()) + "." + sig
    with pytest.raises(Unauthorized, match="invalid"):
        tickets.verify(secret, forged, camera_id=9, now=T0)
    for junk in ("", "abc", "a.b.c", "!!!.???"):
        with pytest.raises(Unauthorized):
            tickets.verify(secret, junk, camera_id=9, now=T0)

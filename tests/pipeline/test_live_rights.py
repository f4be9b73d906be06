"""An open live view lasts only as long as the right to it: revoking the token, deactivating
the user or changing their role ends the stream within seconds, and a ticket dies with the
token it was issued under. Tickets never reach the access log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sample_streams import RtspServerProcess
from tests.pipeline.conftest import FACADE_PLAN, LiveServer, committed, state_is, wait_for
from tests.pipeline.test_api import audit_entries, mjpeg_frames
from vms.core import accounts
from vms.core.http import RedactSecrets
from vms.core.models import Role, User
from vms.pipeline.service import LIVE_RECHECK_S

pytestmark = pytest.mark.rtsp

# The stream must end within a re-check interval plus a frame and the JPEG pacing.
END_WITHIN_S = LIVE_RECHECK_S + 3.0


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=20) as c:
        yield c


def _watch_until_cut(
    api: httpx.Client, url: str, headers: dict[str, str], act: Callable[[], None]
) -> float:
    """Open the stream, read a frame, `act`, and return how long the stream went on after."""
    with api.stream("GET", url, headers=headers) as live:
        assert live.status_code == 200, live.read()
        frames = mjpeg_frames(live)
        next(frames)
        act()
        acted = time.monotonic()
        for _ in frames:
            assert time.monotonic() - acted < END_WITHIN_S + 5, "the stream did not end"
    return time.monotonic() - acted


def test_revocation_deactivation_and_role_change_end_open_views(
    rtsp_server: RtspServerProcess, live_server: LiveServer, api: httpx.Client, iso_engine: Engine
) -> None:
    with committed(iso_engine) as f:
        org = f.org()
        camera = f.camera(org, source={"kind": "rtsp", "url": rtsp_server.url("/real360")},
                          mask_plan=FACADE_PLAN)  # fmt: skip
        admin = f.user(Role.admin, org)
        revoked, deactivated, demoted = (f.user(Role.operator, org) for _ in range(3))
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "streaming")
    url = f"/api/v1/cameras/{camera.id}/live.mjpeg"

    def revoke() -> None:
        r = api.post("/api/v1/auth/revoke", headers=revoked.headers)
        assert r.status_code == 204

    def deactivate() -> None:
        r = api.delete(f"/api/v1/users/{deactivated.user.id}", headers=admin.headers)
        assert r.status_code == 200, r.text

    def demote() -> None:
        r = api.patch(
            f"/api/v1/users/{demoted.user.id}", headers=admin.headers, json={"role": "police"}
        )
        assert r.status_code == 200, r.text

    lasted = {
        "revoked": _watch_until_cut(api, url, revoked.headers, revoke),
        "deactivated": _watch_until_cut(api, url, deactivated.headers, deactivate),
        "demoted": _watch_until_cut(api, url, demoted.headers, demote),
    }
    assert all(t < END_WITHIN_S for t in lasted.values()), lasted
    ended = wait_for(lambda: e if len(e := audit_entries(iso_engine, "live.end")) == 3 else None,
                     10, "three live.end entries")  # fmt: skip
    assert {e.actor_id: e.details["ended_by"] for e in ended} == {
        revoked.user.id: "token_invalid",
        deactivated.user.id: "token_invalid",
        demoted.user.id: "rights_changed",
    }


def test_a_ticket_dies_with_its_token_and_stays_out_of_the_access_log(
    rtsp_server: RtspServerProcess,
    live_server: LiveServer,
    api: httpx.Client,
    iso_engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with committed(iso_engine) as f:
        org = f.org()
        camera = f.camera(org, source={"kind": "rtsp", "url": rtsp_server.url("/real360")},
                          mask_plan=FACADE_PLAN)  # fmt: skip
        operator = f.user(Role.operator, org)
    wait_for(state_is(live_server.pipeline, camera.id, "streaming"), 20, "streaming")
    base = f"/api/v1/cameras/{camera.id}"
    ticket = api.post(f"{base}/live-ticket", headers=operator.headers).json()
    # A second token of the same user: revoking the first voids the ticket, not the user.
    with Session(iso_engine) as session:
        user = session.get(User, operator.user.id)
        assert user is not None
        token, _ = accounts.create_token_for(session=session, actor=None, user=user, ttl_hours=1)
        session.commit()
    assert api.post("/api/v1/auth/revoke", headers=operator.headers).status_code == 204
    refused = api.get(ticket["live_url"])
    assert refused.status_code == 401
    assert "revoked" in refused.text
    other = api.post(f"{base}/live-ticket", headers={"Authorization": f"Bearer {token}"})
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    with api.stream("GET", other.json()["live_url"]) as live:
        assert live.status_code == 200
        next(mjpeg_frames(live))
    # Whatever uvicorn writes to its access log passes the filter first.
    access = logging.getLogger("uvicorn.access")
    assert any(isinstance(f, RedactSecrets) for f in access.filters)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET",
                               f"{base}/live.mjpeg?ticket={other.json()['ticket']}&x=1", "1.1",
                               200), None)  # fmt: skip
    for flt in access.filters:
        assert not isinstance(flt, logging.Filter) or flt.filter(record)
    assert other.json()["ticket"] not in record.getMessage()
    assert "ticket=***&x=1" in record.getMessage()
    assert other.json()["ticket"] not in caplog.text

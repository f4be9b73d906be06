"""Fixtures for the export tests: generated segments and a package built from them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.media import MadeSegment, make_run
from vms.core import signing
from vms.core.crypto import SecretBox
from vms.core.files import file_sha256
from vms.export import package
from vms.export.package import BuiltPackage, CameraInput, PackageInput, SegmentInput

T0 = dt.datetime(2025, 3, 14, 9, 0, 0, tzinfo=dt.UTC)
PLAN = {"version": 1, "method": "pixelate", "default": "anonymise", "zones": []}


@pytest.fixture
def signing_key(tmp_path: Path) -> signing.SigningKey:
    from tests.conftest import TEST_KEY

    key, _ = signing.load_or_create(data_dir=tmp_path / "keydata", box=SecretBox(TEST_KEY.encode()))
    return key


@pytest.fixture
def public_key_file(tmp_path: Path, signing_key: signing.SigningKey) -> Path:
    path = tmp_path / "key.pem"
    path.write_bytes(signing_key.public_pem)
    return path


def segment_inputs(made: list[MadeSegment], *, first_id: int = 1) -> list[SegmentInput]:
    return [
        SegmentInput(
            id=first_id + i,
            path=m.path,
            start=m.start,
            end=m.end,
            sha256=file_sha256(m.path),
            size_bytes=m.path.stat().st_size,
            mask_plan_hash="ab" * 32,
        )
        for i, m in enumerate(made)
    ]


def package_input(
    cameras: dict[int, list[SegmentInput]], start: dt.datetime, end: dt.datetime
) -> PackageInput:
    return PackageInput(
        export_id=7,
        case_number="5000-K123456-25",
        legal_ground={"category": "preliminary_investigation", "text": "RB 27:1, inbrott"},
        reason="Inbrott i cykelrum natten mot fredag",
        requested_by={
            "user_id": 3,
            "email": "polis@example.se",
            "officer": "Anna Polis",
            "unit": "LPO Göteborg",
            "organisation": "Polismyndigheten",
        },
        approved_by={"user_id": 4, "email": "dpo@example.se", "role": "dpo"},
        requested_at=start + dt.timedelta(hours=1),
        approved_at=start + dt.timedelta(hours=2),
        start=start,
        end=end,
        cameras=[
            CameraInput(
                camera_id=cid,
                name=f"Entré {cid}",
                registry={
                    "organisation": "Bostads AB",
                    "purpose": "Skadegörelse",
                    "mode": "recording",
                },
                legal_basis={"id": 1, "kind": "assessment", "status": "in_force"},
                mask_plans={"ab" * 32: PLAN},
                segments=segs,
            )
            for cid, segs in cameras.items()
        ],
    )


@pytest.fixture
def built(tmp_path: Path, signing_key: signing.SigningKey) -> Callable[..., BuiltPackage]:
    """Build a two-camera package over generated footage with a gap in camera 2."""

    def make(start_s: float = 1.25, end_s: float = 11.5) -> BuiltPackage:
        cam1 = segment_inputs(make_run(tmp_path / "c1", start=T0, segments=4, seconds=3))
        cam2 = segment_inputs(
            make_run(
                tmp_path / "c2", start=T0, segments=4, seconds=3, bframes=2, skip=frozenset({1})
            ),
            first_id=100,
        )
        inp = package_input(
            {1: cam1, 2: cam2},
            T0 + dt.timedelta(seconds=start_s),
            T0 + dt.timedelta(seconds=end_s),
        )
        return package.build(
            inp,
            out_path=tmp_path / "out" / "package.zip",
            key=signing_key,
            contact_sheet_seconds=2.0,
        )

    return make

"""Request bodies and answers shared by the registry API tests."""

from __future__ import annotations

from typing import Any

from permits.models import LegalBasis

MASK = {
    "zones": [{"type": "polygon", "action": "anonymise", "points": [[0, 0], [0.5, 0], [0.5, 0.5]]}]
}


def body(basis: LegalBasis | None, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Entré",
        "owner_contact": {"name": "Anna Fastighet", "email": "anna@brf.se", "phone": "+46 8 123"},
        "location": {"address": "Storgatan 1", "lat": 59.33, "lon": 18.07, "direction_deg": 90},
        "purpose": "Förebygga skadegörelse vid entrén",
        "purpose_category": "property_protection",
        "mode": "live_and_recording",
        "retention_hours": 48,
        "legal_basis_id": basis.id if basis else None,
        "source": {"kind": "rtsp", "url": "rtsp://127.0.0.1:8554/cam"},
        "signage": {"posted": True, "text": "Kamerabevakning, Brf Eken"},
        **extra,
    }


def errors(resp: Any) -> list[tuple[str | None, str]]:
    return [(e.get("field"), e["msg"]) for e in resp.json()["detail"]]

"""Legal-basis services."""

from __future__ import annotations

from sqlalchemy.orm import Session

from permits.models import LegalBasis
from permits.policy import BasisFacts


def facts_of(basis: LegalBasis) -> BasisFacts:
    return BasisFacts(
        id=basis.id,
        kind=basis.kind.value,
        status=basis.status.value,
        live_view_allowed=basis.live_view_allowed,
        recording_allowed=basis.recording_allowed,
        max_retention_hours=basis.max_retention_hours,
        masking_required=basis.masking_required,
        valid_from=basis.valid_from,
        valid_until=basis.valid_until,
        review_by=basis.review_by,
        retention_justification=basis.retention_justification,
    )


def basis_facts(*, session: Session, basis_id: int) -> BasisFacts | None:
    basis = session.get(LegalBasis, basis_id)
    return facts_of(basis) if basis is not None else None

"""merge heads: sharing agreements (issue 14) and passthrough recording

Revision ID: 0005_merge_sharing
Revises: 0004, 0002_sharing
Create Date: 2026-12-02 04:10:00.000000
"""

from collections.abc import Sequence

revision: str = "0005_merge_sharing"
down_revision: str | Sequence[str] | None = ("0004", "0002_sharing")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""Authorisation cases for legal bases and their documents."""

from __future__ import annotations

from typing import Any

from permits import service
from tests.authz import Ctx, Req, RouteCase, roles
from vms.core.models import Role

# Facility managers and admin for their organisations; DPOs document assessments for theirs.
BASIS_ROLES = roles("admin", "facility_manager", "dpo")
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _basis(ctx: Ctx, **extra: Any) -> Req:
    basis = ctx.factory.basis(ctx.owner)
    return Req(path_params={"basis_id": basis.id}, **extra)


def _draft(ctx: Ctx) -> Req:
    basis = ctx.factory.basis(ctx.owner, status="draft")
    return Req(path_params={"basis_id": basis.id}, json={"status": "in_force"})


def _document(ctx: Ctx) -> Req:
    basis = ctx.factory.basis(ctx.owner)
    admin = ctx.factory.user(Role.admin, ctx.owner)
    doc = service.add_document(
        session=ctx.session,
        actor=admin.principal,
        basis_id=basis.id,
        filename="beslut.pdf",
        content=PDF,
        documents_dir=ctx.settings.data_dir / "documents",
    )
    return Req(path_params={"basis_id": basis.id, "document_id": doc.id})


CASES = [
    RouteCase(
        "POST",
        "/api/v1/legal-bases",
        201,
        BASIS_ROLES,
        lambda ctx: Req(
            json={"organisation_id": ctx.owner.id, "kind": "assessment", "title": "Entré"}
        ),
    ),
    RouteCase(
        "GET",
        "/api/v1/legal-bases",
        200,
        BASIS_ROLES,
        lambda ctx: Req(params={"organisation_id": ctx.owner.id}),
    ),
    RouteCase("GET", "/api/v1/legal-bases/{basis_id}", 200, BASIS_ROLES, _basis),
    # Changing a basis in force and putting one in force are the DPO's or admin's decisions
    # (separation of duties): a facility manager of the organisation gets 403.
    RouteCase(
        "PATCH",
        "/api/v1/legal-bases/{basis_id}",
        200,
        BASIS_ROLES,
        lambda ctx: _basis(ctx, json={"active_hours": "dygnet runt"}),
        overrides={(Role.facility_manager, True): 403},
    ),
    RouteCase(
        "POST",
        "/api/v1/legal-bases/{basis_id}/status",
        200,
        BASIS_ROLES,
        _draft,
        overrides={(Role.facility_manager, True): 403},
    ),
    RouteCase(
        "POST",
        "/api/v1/legal-bases/{basis_id}/documents",
        201,
        BASIS_ROLES,
        lambda ctx: _basis(ctx, files={"file": ("beslut.pdf", PDF, "application/pdf")}),
    ),
    RouteCase(
        "GET", "/api/v1/legal-bases/{basis_id}/documents/{document_id}", 200, BASIS_ROLES, _document
    ),
]

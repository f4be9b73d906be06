"""Authorisation cases for the cluster route (admin only: it spans every organisation)."""

from __future__ import annotations

from tests.authz import RouteCase, roles

CASES = [
    RouteCase("GET", "/api/v1/cluster", 200, roles("admin"), other_org=None),
]

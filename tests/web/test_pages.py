"""The pages against the API they run on, and the words they use.

A page is offered to a role only if the API lets that role do what the page needs: checked
against the authorisation matrix's own cases, so the UI cannot drift into a second set of rules.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.authz import RouteCase
from tests.test_authz_matrix import CASES
from vms.core.models import Role
from vms.web import i18n
from vms.web.pages import PAGES, PageSpec

WEB = Path(i18n.__file__).parent
API_CASES: dict[tuple[str, str], RouteCase] = {(c.method, c.path): c for c in CASES}


def _api_allows(case: RouteCase, role: Role) -> bool:
    # `ok` is what an allowed caller gets (a 409 "pipeline not running" counts: it got past
    # authorisation); 401/403/404 are refusals.
    return case.expected(role, own=True) == case.ok


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_role_offered_a_page_may_use_its_api(page: PageSpec) -> None:
    assert page.api, f"{page.name}: name the API operations the page needs"
    for op in page.api:
        case = API_CASES.get(op)
        assert case is not None, f"{page.name}: {op} is not an API route"
        refused = sorted(r.value for r in page.roles if not _api_allows(case, r))
        assert not refused, f"{page.name} is offered to {refused}, but {op} refuses them"


def test_pages_have_their_template_and_script() -> None:
    for page in PAGES:
        assert (WEB / "templates" / page.template).is_file(), page.template
        if page.script:
            assert (WEB / "static" / "js" / "pages" / f"{page.script}.js").is_file(), page.script


def test_both_languages_have_the_same_words() -> None:
    sv, en = set(i18n.SV), set(i18n.EN)
    assert sorted(sv - en) == [], "only in Swedish"
    assert sorted(en - sv) == [], "only in English"
    for key in sv:
        names_sv = set(re.findall(r"\{(\w+)\}", i18n.SV[key]))
        names_en = set(re.findall(r"\{(\w+)\}", i18n.EN[key]))
        assert names_sv == names_en, f"{key}: placeholders differ"


def _used_keys() -> set[str]:
    """Message keys written literally in templates and scripts: t("a.b") / t('a.b')."""
    keys: set[str] = set()
    pattern = re.compile(r"""\bt\(\s*["']([a-z_0-9]+(?:\.[a-z_0-9]+)+)["']""")
    for path in [*WEB.glob("templates/*.html"), *WEB.glob("static/js/**/*.js")]:
        keys |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return keys


def test_every_word_the_interface_uses_exists() -> None:
    used = _used_keys()
    assert len(used) > 300  # the extraction works
    missing = sorted(k for k in used if k not in i18n.EN)
    assert not missing, f"message keys used but not defined: {missing}"
    # Keys built from a prefix and an enum value (role.*, state.*, ...) exist for every value.
    from permits.models import BasisKind, BasisStatus
    from registry.models import CameraMode, CameraStatus
    from registry.schemas import PermitStatus, PurposeCategory
    from vms.export.models import ExportStatus, LegalGroundCategory
    from vms.pipeline.status import CameraState, RecordingState

    enums = {
        "role": Role,
        "mode": CameraMode,
        "camera_status": CameraStatus,
        "permit": PermitStatus,
        "purpose": PurposeCategory,
        "basis_kind": BasisKind,
        "basis_status": BasisStatus,
        "export_status": ExportStatus,
        "ground": LegalGroundCategory,
        "state": CameraState,
        "recording": RecordingState,
    }
    for prefix, enum in enums.items():
        for member in enum:
            assert f"{prefix}.{member.value}" in i18n.EN, f"{prefix}.{member.value}"
    for page in PAGES:
        assert page.title in i18n.EN, page.title


def test_scripts_and_templates_stay_within_the_csp() -> None:
    """No inline handlers, no inline style, no string-to-code: what the CSP would block anyway
    must not be written in the first place (and would break silently)."""
    for path in WEB.glob("templates/*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\son[a-z]+=", text), f"{path.name}: inline event handler"
        assert not re.search(r"\sstyle=", text), f"{path.name}: inline style"
        assert not re.search(r"<script(?![^>]*(\bsrc=|application/json))", text), path.name
    for path in WEB.glob("static/js/**/*.js"):
        text = path.read_text(encoding="utf-8")
        for banned in (
            "innerHTML",
            "eval(",
            "new Function",
            'setAttribute("style"',
            "document.write",
        ):
            assert banned not in text, f"{path.name}: {banned}"

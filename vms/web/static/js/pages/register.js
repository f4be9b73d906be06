// The register (förteckning): every camera incl. those decommissioned in the last 5 years.
import { api, errorText } from "../lib/api.js";
import { $, h, clear, emptyRow, fmtDateTime, status } from "../lib/dom.js";
import { lang, t, tv } from "../lib/i18n.js";

async function load() {
  try {
    const report = await api("/api/v1/register");
    const tbody = clear($("#register-table tbody"));
    for (const e of report.entries) {
      const basis = e.legal_basis_title
        ? `${e.legal_basis_title} (${tv("basis_kind", e.legal_basis_kind)}, ${tv("basis_status", e.legal_basis_status)})`
        : "–";
      tbody.append(h("tr", { dataset: { cameraId: e.camera_id } },
        h("td", {}, e.camera_name, h("div", { class: "muted small", text: e.address || "" })),
        h("td", {}, e.controller, h("div", { class: "muted small", text: [e.contact_name, e.contact_email].filter(Boolean).join(", ") })),
        h("td", { class: "small", text: e.purpose }),
        h("td", { text: tv("mode", e.mode) }),
        h("td", { class: "num", text: t("common.hours", { n: e.retention_hours }) }),
        h("td", { class: "small", text: basis }),
        h("td", { text: tv("permit", e.permit_status) }),
        h("td", { text: e.signage_posted ? t("common.yes") : t("common.no") }),
        h("td", { text: tv("camera_status", e.status) })));
    }
    if (!report.entries.length) emptyRow(tbody, 9, t("cameras.none"));
    $("#generated-at").textContent = t("common.generated", { at: fmtDateTime(report.generated_at, lang) });
  } catch (err) {
    status(errorText(err), "bad");
  }
}

load();

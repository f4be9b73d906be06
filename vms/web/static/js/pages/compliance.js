// DPO dashboard: the compliance report grouped into what a DPO acts on, and retention allowed
// vs. actual from the retention report (shown only to the roles the API gives it to).
import { api, ApiError, errorText } from "../lib/api.js";
import { $, h, can, clear, emptyRow, fmtDateTime, status } from "../lib/dom.js";
import { lang, t } from "../lib/i18n.js";

// The report's codes (registry.reports.camera_issues) by what the DPO has to do about them.
const GROUPS = {
  missing: ["basis_missing", "basis_draft", "basis_expired", "basis_revoked"],
  review: ["basis_expiring"],
  conflict: ["live_only_recording", "live_view_not_allowed", "retention_exceeds_basis"],
};
const groupOf = (code) =>
  Object.keys(GROUPS).find((g) => GROUPS[g].includes(code)) || "other";
const CARD_CLASS = { missing: "bad", conflict: "bad", review: "warn", other: "warn" };

function hours(h0) {
  if (h0 === null || h0 === undefined) return "–";
  if (h0 >= 48) return t("common.days", { n: Math.round((h0 / 24) * 10) / 10 });
  if (h0 >= 1) return t("common.hours", { n: Math.round(h0 * 10) / 10 });
  return t("common.minutes", { n: Math.round(h0 * 60) });
}

function cameraLink(id, name) {
  return can("camera_edit") ? h("a", { href: `/cameras/${id}`, text: name }) : name;
}

async function loadCompliance() {
  const report = await api("/api/v1/compliance");
  const counts = { missing: 0, review: 0, conflict: 0, other: 0 };
  for (const item of report.items) counts[groupOf(item.code)] += 1;
  const cards = clear($("#compliance-cards"));
  cards.append(
    h("li", { class: "ok" }, h("span", { class: "count", text: String(report.cameras_checked) }), h("span", { class: "label", text: t("compliance.checked") })),
  );
  for (const group of ["missing", "conflict", "review", "other"]) {
    cards.append(
      h("li", { class: counts[group] ? CARD_CLASS[group] : "ok", dataset: { group } },
        h("span", { class: "count", text: String(counts[group]) }),
        h("span", { class: "label", text: t(`compliance.group.${group}`) })),
    );
  }
  const tbody = clear($("#compliance-items tbody"));
  const order = ["missing", "conflict", "review", "other"];
  const items = [...report.items].sort((a, b) => order.indexOf(groupOf(a.code)) - order.indexOf(groupOf(b.code)));
  for (const item of items) {
    tbody.append(h("tr", { dataset: { code: item.code } },
      h("td", {}, cameraLink(item.camera_id, item.camera_name)),
      h("td", { text: t(`compliance.group.${groupOf(item.code)}`) }),
      h("td", { text: item.msg })));
  }
  if (!items.length) emptyRow(tbody, 3, t("compliance.all_clear"));
  $("#generated-at").textContent = t("common.generated", { at: fmtDateTime(report.generated_at, lang) });
}

async function loadRetention() {
  const section = $("#retention-section");
  let report;
  try {
    report = await api("/api/v1/reports/retention");
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      section.hidden = true; // the API keeps the retention report for DPOs and admins
      return;
    }
    throw err;
  }
  const tbody = clear($("#retention-table tbody"));
  const now = Date.now();
  for (const cam of report.cameras) {
    const actual = cam.oldest_footage ? (now - new Date(cam.oldest_footage).getTime()) / 3.6e6 : null;
    const over = actual !== null && actual > cam.allowed_retention_hours;
    tbody.append(h("tr", { dataset: { cameraId: cam.camera_id } },
      h("td", {}, cameraLink(cam.camera_id, cam.camera_name)),
      h("td", { class: "num", text: hours(cam.allowed_retention_hours) }),
      h("td", { class: "num", text: hours(cam.configured_retention_hours) }),
      h("td", { class: "num" }, over ? h("span", { class: "badge badge-bad", text: hours(actual) }) : hours(actual)),
      h("td", { class: "num" }, cam.violations ? h("span", { class: "badge badge-bad", text: String(cam.violations) }) : "0")));
  }
  if (!report.cameras.length) emptyRow(tbody, 5, t("retention.none"));
}

Promise.all([loadCompliance(), loadRetention()]).catch((err) => status(errorText(err), "bad"));

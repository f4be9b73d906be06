// Retention report (allowed vs. kept, holds, deletions, violations) and deletion receipts.
import { api, errorText } from "../lib/api.js";
import { $, h, clear, emptyRow, fmtBytes, fmtDateTime, status } from "../lib/dom.js";
import { readForm } from "../lib/forms.js";
import { lang, t } from "../lib/i18n.js";

const PAGE = 50;
let offset = 0;

async function loadReport() {
  const report = await api("/api/v1/reports/retention");
  $("#report-summary").textContent = t("retention.summary", {
    deletions: report.total_deletions,
    violations: report.total_violations,
    sweep: fmtDateTime(report.last_sweep_at, lang),
  });
  const tbody = clear($("#report-table tbody"));
  for (const c of report.cameras) {
    tbody.append(h("tr", {},
      h("td", { text: c.camera_name }),
      h("td", { class: "num", text: t("common.hours", { n: c.allowed_retention_hours }) }),
      h("td", { class: "num", text: t("common.hours", { n: c.configured_retention_hours }) }),
      h("td", { text: fmtDateTime(c.oldest_footage, lang) }),
      h("td", { class: "num", text: `${c.segments} (${fmtBytes(c.size_bytes)})` }),
      h("td", { class: "num", text: String(c.held_segments) }),
      h("td", { class: "num", text: String(c.deletions_in_period) }),
      h("td", { class: "num" }, c.violations ? h("span", { class: "badge badge-bad", text: String(c.violations) }) : "0")));
  }
  if (!report.cameras.length) emptyRow(tbody, 8, t("retention.none"));
}

async function loadReceipts() {
  const filters = readForm($("#receipt-filters"));
  const page = await api("/api/v1/retention/receipts", { query: { ...filters, limit: PAGE, offset } });
  const tbody = clear($("#receipt-table tbody"));
  for (const r of page.items) {
    tbody.append(h("tr", {},
      h("td", { text: fmtDateTime(r.at, lang) }),
      h("td", { class: "num", text: String(r.camera_id) }),
      h("td", { text: `${fmtDateTime(r.start, lang)} – ${fmtDateTime(r.end, lang)}` }),
      h("td", { text: `${r.rule}: ${r.reason}` }),
      h("td", { class: "hash mono", text: r.sha256 || "–" })));
  }
  if (!page.items.length) emptyRow(tbody, 5, t("retention.no_receipts"));
  const nav = clear($("#receipt-pager"));
  const prev = h("button", { type: "button", class: "btn btn-small", text: t("common.previous") });
  const next = h("button", { type: "button", class: "btn btn-small", text: t("common.next") });
  prev.disabled = offset === 0;
  next.disabled = offset + PAGE >= page.total;
  prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadReceipts().catch(fail); });
  next.addEventListener("click", () => { offset += PAGE; loadReceipts().catch(fail); });
  nav.append(prev, next, h("span", { class: "muted", text: t("common.count", { from: page.total ? offset + 1 : 0, to: offset + page.items.length, total: page.total }) }));
}

const fail = (err) => status(errorText(err), "bad");
$("#receipt-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  offset = 0;
  loadReceipts().catch(fail);
});

Promise.all([loadReport(), loadReceipts()]).catch(fail);

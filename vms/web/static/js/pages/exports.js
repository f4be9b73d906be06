// Export requests: police see their organisation's, DPOs those on their organisations' cameras.
import { api, errorText } from "../lib/api.js";
import { $, h, clear, emptyRow, fmtDateTime, status } from "../lib/dom.js";
import { lang, t, tv } from "../lib/i18n.js";

const PAGE = 50;
const form = $("#export-filters");
let offset = 0;

export const STATUS_BADGE = {
  requested: "warn",
  approved: "info",
  building: "info",
  ready: "ok",
  downloaded: "ok",
  rejected: "bad",
  failed: "bad",
  expired: "muted",
  closed: "muted",
};

async function load() {
  const filters = Object.fromEntries([...new FormData(form).entries()].filter(([, v]) => v));
  try {
    const page = await api("/api/v1/exports", { query: { ...filters, limit: PAGE, offset } });
    const tbody = clear($("#export-table tbody"));
    for (const x of page.items) {
      tbody.append(h("tr", { dataset: { exportId: x.id, status: x.status } },
        h("td", { class: "num" }, h("a", { href: `/exports/${x.id}`, text: `#${x.id}` })),
        h("td", {}, h("a", { href: `/exports/${x.id}`, text: x.case_number })),
        h("td", {}, h("span", { class: `badge badge-${STATUS_BADGE[x.status] || "muted"}`, text: tv("export_status", x.status) })),
        h("td", { text: `${x.officer}, ${x.unit}` }),
        h("td", { class: "num", text: String(x.camera_ids.length) }),
        h("td", { class: "small", text: `${fmtDateTime(x.start, lang)} – ${fmtDateTime(x.end, lang)}` }),
        h("td", { text: fmtDateTime(x.created_at, lang) })));
    }
    if (!page.items.length) emptyRow(tbody, 7, t("exports.none"));
    const nav = clear($("#export-pager"));
    const prev = h("button", { type: "button", class: "btn btn-small", text: t("common.previous") });
    const next = h("button", { type: "button", class: "btn btn-small", text: t("common.next") });
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= page.total;
    prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
    next.addEventListener("click", () => { offset += PAGE; load(); });
    nav.append(prev, next);
  } catch (err) {
    status(errorText(err), "bad");
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  offset = 0;
  load();
});
load();

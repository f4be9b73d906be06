// The audit log: filters as the API takes them, newest first, and the hash-chain check.
import { api, errorText } from "../lib/api.js";
import { $, h, clear, emptyRow, fmtDateTime } from "../lib/dom.js";
import { clearErrors, readForm, showErrors } from "../lib/forms.js";
import { lang, t } from "../lib/i18n.js";

const PAGE = 50;
const form = $("#audit-filters");
let offset = 0;

async function load() {
  clearErrors(form);
  try {
    const page = await api("/api/v1/audit", { query: { ...readForm(form), limit: PAGE, offset } });
    const tbody = clear($("#audit-table tbody"));
    for (const e of page.items) {
      tbody.append(h("tr", {},
        h("td", { class: "num", text: String(e.seq) }),
        h("td", { text: fmtDateTime(e.at, lang) }),
        h("td", { text: e.actor_email || (e.actor_id ? `#${e.actor_id}` : t("audit.system")) }),
        h("td", {}, h("code", { text: e.action })),
        h("td", { text: e.target_type ? `${e.target_type} ${e.target_id ?? ""}` : "–" }),
        h("td", { class: "details-json mono", text: JSON.stringify(e.details) })));
    }
    if (!page.items.length) emptyRow(tbody, 6, t("audit.none"));
    $("#audit-count").textContent = t("common.count", { from: page.total ? offset + 1 : 0, to: offset + page.items.length, total: page.total });
    const nav = clear($("#audit-pager"));
    const prev = h("button", { type: "button", class: "btn btn-small", text: t("common.previous") });
    const next = h("button", { type: "button", class: "btn btn-small", text: t("common.next") });
    prev.disabled = offset === 0;
    next.disabled = offset + PAGE >= page.total;
    prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
    next.addEventListener("click", () => { offset += PAGE; load(); });
    nav.append(prev, next);
  } catch (err) {
    showErrors(form, err);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  offset = 0;
  load();
});

$("#verify-btn").addEventListener("click", async () => {
  const out = clear($("#verify-result"));
  out.append(h("p", { class: "muted", text: t("audit.verifying") }));
  try {
    const r = await api("/api/v1/audit/verify");
    clear(out);
    out.append(
      r.ok
        ? h("p", { class: "notice ok", id: "verify-ok", text: t("audit.chain_ok", { n: r.checked }) })
        : h("p", { class: "notice bad", id: "verify-bad", text: t("audit.chain_broken", { seq: r.first_bad_seq, problem: r.problem }) }),
    );
  } catch (err) {
    clear(out).append(h("p", { class: "notice bad", text: errorText(err) }));
  }
});

load();

// CSV import: all or nothing; a refused file lists every bad row, column and reason.
import { api, ApiError } from "../lib/api.js";
import { $, h, clear } from "../lib/dom.js";
import { clearErrors, showErrors } from "../lib/forms.js";
import { t } from "../lib/i18n.js";

const form = $("#import-form");
const report = $("#import-report");
const tbody = $("#import-rows tbody");

// The importer's items: field "rows.<n>[.<column>]", msg "row <n>[, column <c>]: reason".
function parseItem(item) {
  const m = /^rows\.(\d+)(?:\.(.+))?$/.exec(item.field || "");
  const reason = item.msg.replace(/^row \d+(, column [^:]+)?: /, "");
  return m ? { row: m[1], column: m[2] || "", reason } : { row: "", column: item.field || "", reason: item.msg };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const file = $("#i-file").files[0];
  if (!file) {
    showErrors(form, new ApiError(422, [{ field: "file", msg: t("import.choose_file") }]));
    return;
  }
  const dryRun = $("#i-dry").checked;
  const data = new FormData();
  data.append("file", file);
  clear(tbody);
  report.hidden = false;
  try {
    const result = await api("/api/v1/cameras/import", { method: "POST", form: data, query: { dry_run: dryRun } });
    $("#import-report-title").textContent = dryRun ? t("import.dry_ok") : t("import.done");
    $("#import-summary").textContent = t("import.summary", {
      rows: result.rows,
      created: result.created,
      sites: result.sites_created,
    });
    $("#import-rows").hidden = true;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 422 || !err.items.some((i) => (i.field || "").startsWith("rows."))) {
      report.hidden = true;
      showErrors(form, err);
      return;
    }
    $("#import-report-title").textContent = t("import.refused");
    $("#import-summary").textContent = t("import.refused_summary", { n: err.items.length });
    $("#import-rows").hidden = false;
    for (const item of err.items) {
      const p = parseItem(item);
      tbody.append(h("tr", {}, h("td", { class: "num", text: p.row }), h("td", { text: p.column }), h("td", { text: p.reason })));
    }
    $("#import-report-title").focus?.();
  }
});

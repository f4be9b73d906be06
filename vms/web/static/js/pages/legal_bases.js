// Legal bases: the list, a draft form (fields by kind), PDF upload and putting a basis in force.
import { api, errorText } from "../lib/api.js";
import { $, $$, h, clear, emptyRow, fmtDateTime, status } from "../lib/dom.js";
import { clearErrors, readForm, showErrors } from "../lib/forms.js";
import { lang, t, tv } from "../lib/i18n.js";

const tbody = $("#basis-table tbody");
const form = $("#basis-form");
const dialog = $("#upload-dialog");
const uploadForm = $("#upload-form");
let uploadFor = null;

function badgeFor(basis) {
  const kind = basis.in_force_now ? "ok" : basis.status === "draft" ? "warn" : "bad";
  const label = basis.in_force_now ? t("basis.in_force_now") : tv("basis_status", basis.status);
  return h("span", { class: `badge badge-${kind}`, text: label });
}

function row(basis) {
  const allows = [
    basis.live_view_allowed && t("basis.allows_live"),
    basis.recording_allowed && t("basis.allows_recording"),
    basis.masking_required && t("basis.requires_masking"),
  ].filter(Boolean).join(", ") || "–";
  const docs = h("ul", { class: "plain-list" },
    basis.documents.map((d) =>
      h("li", {},
        h("a", { href: `/api/v1/legal-bases/${basis.id}/documents/${d.id}`, text: d.filename }),
        h("span", { class: "muted small", text: ` ${fmtDateTime(d.uploaded_at, lang)}` }))));
  const actions = h("td", { class: "actions" });
  if (!["expired", "revoked"].includes(basis.status)) {
    const upload = h("button", { type: "button", class: "btn btn-small", text: t("basis.upload") });
    upload.addEventListener("click", () => {
      uploadFor = basis.id;
      clearErrors(uploadForm);
      uploadForm.reset();
      dialog.showModal();
    });
    actions.append(upload);
  }
  // Separation of duties: the DPO or an admin puts a basis in force, a facility manager drafts.
  const decides = ["admin", "dpo"].includes(document.body.dataset.role || "");
  if (basis.status === "draft" && !decides) {
    actions.append(h("span", { class: "muted small", text: t("basis.decided_by_dpo") }));
  }
  if (basis.status === "draft" && decides) {
    const enact = h("button", { type: "button", class: "btn btn-small", text: t("basis.put_in_force") });
    enact.addEventListener("click", async () => {
      try {
        await api(`/api/v1/legal-bases/${basis.id}/status`, { method: "POST", json: { status: "in_force" } });
        status(t("basis.now_in_force", { title: basis.title }), "ok");
        load();
      } catch (err) {
        status(errorText(err), "bad");
      }
    });
    actions.append(enact);
  }
  return h("tr", { dataset: { basisId: basis.id } },
    h("td", {}, basis.title, h("div", { class: "muted small", text: basis.purpose || "" })),
    h("td", { text: tv("basis_kind", basis.kind) }),
    h("td", {}, badgeFor(basis)),
    h("td", { class: "small", text: allows }),
    h("td", { class: "num", text: String(basis.max_retention_hours) }),
    h("td", {}, docs),
    actions);
}

async function load() {
  try {
    const page = await api("/api/v1/legal-bases", { query: { limit: 200 } });
    clear(tbody);
    for (const basis of page.items) tbody.append(row(basis));
    if (!page.items.length) emptyRow(tbody, 7, t("basis.none"));
  } catch (err) {
    status(errorText(err), "bad");
  }
}

function applyKind() {
  const kind = $("#b-kind").value;
  for (const el of $$("[data-kinds]", form)) {
    const on = el.dataset.kinds.split(" ").includes(kind);
    el.hidden = !on;
    for (const input of el.querySelectorAll("input, textarea, select")) input.disabled = !on;
  }
}
$("#b-kind").addEventListener("change", applyKind);
applyKind();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  try {
    const basis = await api("/api/v1/legal-bases", { method: "POST", json: { ...readForm(form), status: "draft" } });
    status(t("basis.created", { title: basis.title }), "ok");
    form.reset();
    applyKind();
    load();
  } catch (err) {
    showErrors(form, err);
  }
});

uploadForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(uploadForm);
  const file = $("#u-file").files[0];
  const data = new FormData();
  if (file) data.append("file", file);
  try {
    const doc = await api(`/api/v1/legal-bases/${uploadFor}/documents`, { method: "POST", form: data });
    dialog.close();
    status(t("basis.uploaded", { name: doc.filename, sha: doc.sha256.slice(0, 16) }), "ok");
    load();
  } catch (err) {
    showErrors(uploadForm, err);
  }
});
$("#upload-cancel").addEventListener("click", () => dialog.close());

load();

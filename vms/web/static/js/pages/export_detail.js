// One export request: follow its status (polled while it moves), decide it (DPO, admin),
// download it (the requesting officer), close it, and verify it offline.
import { api, errorText } from "../lib/api.js";
import { $, h, clear, fmtBytes, fmtDateTime, pageData, status } from "../lib/dom.js";
import { clearErrors, showErrors } from "../lib/forms.js";
import { lang, t, tv } from "../lib/i18n.js";
import { loadKey } from "./verify.js";

const { export_id: exportId, role, user_id: userId } = pageData();
const MOVING = ["approved", "building"];
const BADGE = { requested: "warn", approved: "info", building: "info", ready: "ok", downloaded: "ok", rejected: "bad", failed: "bad", expired: "muted", closed: "muted" };
let timer = null;

function show(x) {
  const badge = $("#export-status");
  badge.className = `badge badge-${BADGE[x.status] || "muted"}`;
  badge.textContent = tv("export_status", x.status);
  badge.dataset.status = x.status;
  const progress = $("#export-progress");
  progress.hidden = !MOVING.includes(x.status);
  progress.value = x.progress;
  const notes = {
    requested: t("exports.note.requested"),
    approved: t("exports.note.approved"),
    building: t("exports.note.building", { n: x.progress }),
    ready: t("exports.note.ready", { at: fmtDateTime(x.expires_at, lang) }),
    downloaded: t("exports.note.ready", { at: fmtDateTime(x.expires_at, lang) }),
    failed: `${t("exports.note.failed")} ${x.failure_reason || ""}`,
    rejected: `${t("exports.note.rejected")} ${x.decision_note || ""}`,
  };
  $("#export-note").textContent = notes[x.status] || "";

  const fields = clear($("#export-fields"));
  const row = (k, v) => v !== null && v !== undefined && v !== "" && fields.append(h("dt", { text: k }), h("dd", { text: String(v) }));
  row(t("export.case_number"), x.case_number);
  row(t("export.legal_ground"), `${tv("ground", x.legal_ground.category)}: ${x.legal_ground.text}`);
  row(t("export.officer"), `${x.officer}, ${x.unit}`);
  row(t("export.reason"), x.reason);
  row(t("exports.cameras"), x.camera_ids.join(", "));
  row(t("exports.range"), `${fmtDateTime(x.start, lang)} – ${fmtDateTime(x.end, lang)}`);
  row(t("exports.created"), fmtDateTime(x.created_at, lang));
  if (x.decided_at) row(t("exports.decided"), `${fmtDateTime(x.decided_at, lang)}${x.decision_note ? ` · ${x.decision_note}` : ""}`);
  if (x.package_sha256) row(t("exports.package"), `${fmtBytes(x.package_size)} · SHA-256 ${x.package_sha256}`);
  if (x.download_count) row(t("exports.downloads"), `${x.download_count} (${fmtDateTime(x.last_downloaded_at, lang)})`);
  if (x.hold_id) row(t("exports.hold"), `#${x.hold_id}`);

  // What this user can do is what the API lets them: the buttons follow the request's state
  // and the role; a refusal from the API is shown as it comes.
  const downloadable = ["ready", "downloaded"].includes(x.status) && x.requester_id === userId;
  $("#download-box").hidden = !downloadable;
  if (downloadable) {
    $("#download-link").href = `/api/v1/exports/${x.id}/download`;
    $("#download-sha").textContent = `SHA-256: ${x.package_sha256}`;
  }
  $("#decide-form").hidden = !(["requested", "failed"].includes(x.status) && ["dpo", "admin"].includes(role));
  const closable = x.requester_id === userId || role === "admin";
  $("#close-form").hidden = !(closable && !["closed", "rejected", "expired"].includes(x.status));
  $("#export-actions").hidden = $("#download-box").hidden && $("#decide-form").hidden && $("#close-form").hidden;

  clearTimeout(timer);
  if (MOVING.includes(x.status) || x.status === "requested") timer = setTimeout(load, MOVING.includes(x.status) ? 1500 : 5000);
}

async function load() {
  try {
    show(await api(`/api/v1/exports/${exportId}`));
  } catch (err) {
    status(errorText(err), "bad");
  }
}

async function decide(action, body) {
  const form = $("#decide-form");
  clearErrors(form);
  try {
    show(await api(`/api/v1/exports/${exportId}/${action}`, { method: "POST", json: body }));
    status(t(action === "approve" ? "exports.approved" : "exports.rejected"), "ok");
  } catch (err) {
    showErrors(form, err, { rename: (f) => (f === "reason" ? "note" : f) });
  }
}

$("#approve-btn").addEventListener("click", () => {
  const note = $("#d-note").value.trim();
  decide("approve", note ? { note } : {});
});
$("#reject-btn").addEventListener("click", () => decide("reject", { reason: $("#d-note").value.trim() }));
$("#close-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = $("#close-form");
  clearErrors(form);
  try {
    const reason = $("#cl-reason").value.trim();
    show(await api(`/api/v1/exports/${exportId}/close`, {
      method: "POST",
      json: { keep_hold: $("#cl-keep").checked, ...(reason ? { reason } : {}) },
    }));
    status(t("exports.closed"), "ok");
  } catch (err) {
    showErrors(form, err);
  }
});
$("#download-link").addEventListener("click", () => setTimeout(load, 1500));

load();
loadKey();

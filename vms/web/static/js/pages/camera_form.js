// Register or edit a camera. The API validates everything; its 422 items are shown next to the
// field they name. Credentials are write-only: a blank password keeps the stored one.
import { api, apiAll, errorText } from "../lib/api.js";
import { $, $$, h, clear, pageData, status } from "../lib/dom.js";
import { clearErrors, fillForm, readForm, showErrors } from "../lib/forms.js";
import { t, tv } from "../lib/i18n.js";

const form = $("#camera-form");
const { camera_id: cameraId } = pageData();
const kindSelect = $("#c-kind");

function applyKind() {
  const kind = kindSelect.value;
  for (const box of $$("[data-kind]", form)) {
    const on = box.dataset.kind.split(" ").includes(kind);
    box.hidden = !on;
    for (const el of box.querySelectorAll("input, select, textarea")) el.disabled = !on;
  }
}
kindSelect.addEventListener("change", applyKind);

async function loadChoices() {
  const [sites, bases] = await Promise.all([
    apiAll("/api/v1/sites"),
    apiAll("/api/v1/legal-bases"),
  ]);
  const siteSelect = $("#c-site");
  for (const site of sites) siteSelect.append(h("option", { value: site.id, text: site.name }));
  const basisSelect = $("#c-basis");
  for (const basis of bases) {
    const label = `${basis.title} (${tv("basis_status", basis.status)}${basis.in_force_now ? "" : `, ${t("basis.not_in_force")}`})`;
    basisSelect.append(h("option", { value: basis.id, text: label }));
  }
}

function fromCamera(camera) {
  return {
    ...camera,
    source: { ...camera.source, username: "", password: "" },
    status: camera.status === "decommissioned" ? "paused" : camera.status,
  };
}

function body() {
  const data = readForm(form);
  // Only the fields of the chosen source kind are enabled, so `source` is already right.
  return data;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const save = $("#camera-save");
  save.disabled = true;
  try {
    const data = body();
    const camera = cameraId
      ? await api(`/api/v1/cameras/${cameraId}`, { method: "PATCH", json: data })
      : await api("/api/v1/cameras", { method: "POST", json: data });
    if (!cameraId) {
      window.location.assign(`/cameras/${camera.id}?saved=1`);
      return;
    }
    fillForm(form, fromCamera(camera));
    $("#camera-title").textContent = camera.name;
    status(t("camera.saved"), "ok");
  } catch (err) {
    showErrors(form, err);
  } finally {
    save.disabled = false;
  }
});

// -- ONVIF probe: device information and profiles, pick one ------------------------------------

$("#probe-btn").addEventListener("click", async () => {
  const out = clear($("#probe-result"));
  clearErrors(form);
  const data = readForm(form).source || {};
  out.append(h("p", { class: "muted", text: t("camera.probing") }));
  try {
    const found = await api("/api/v1/onvif/probe", {
      method: "POST",
      json: {
        host: data.host || "",
        port: data.port || 80,
        username: data.username || "",
        password: data.password || "",
      },
    });
    clear(out);
    const d = found.device;
    out.append(h("p", { text: `${d.manufacturer} ${d.model} · ${t("camera.firmware")} ${d.firmware} · ${d.serial}` }));
    const group = h("fieldset", { class: "profiles" }, h("legend", { text: t("camera.profiles") }));
    for (const p of found.profiles) {
      const id = `profile-${p.token}`;
      const input = h("input", { type: "radio", name: "probe_profile", id, value: p.token, "data-skip": "" });
      if (p.token === ($("#c-profile").value || found.recommended_profile_token)) input.checked = true;
      input.addEventListener("change", () => {
        $("#c-profile").value = p.token;
        // Live view from the recorded profile itself needs no second stream.
        if ($("#c-live-profile").value === p.token) $("#c-live-profile").value = "";
      });
      const details = [p.encoding, p.width && `${p.width}×${p.height}`, p.fps && `${p.fps} fps`].filter(Boolean).join(", ");
      const recommended = p.token === found.recommended_profile_token ? ` (${t("camera.recommended")})`
        : p.token === found.recommended_live_profile_token ? ` (${t("camera.recommended_live")})` : "";
      group.append(h("div", { class: "field check" }, input, h("label", { for: id, text: `${p.name}: ${details}${recommended}` })));
    }
    out.append(group);
    if (!$("#c-profile").value && found.recommended_profile_token) $("#c-profile").value = found.recommended_profile_token;
    // A smaller profile for live view, where the device has one (the recorded one otherwise).
    if (!$("#c-live-profile").value && found.recommended_live_profile_token) {
      $("#c-live-profile").value = found.recommended_live_profile_token;
    }
  } catch (err) {
    clear(out);
    // Probe errors name host/password/port: the same names as the source fields.
    showErrors(form, err, { rename: (f) => `source.${f}` });
  }
});

async function init() {
  applyKind();
  try {
    await loadChoices();
    if (cameraId) {
      const camera = await api(`/api/v1/cameras/${cameraId}`);
      fillForm(form, fromCamera(camera));
      applyKind();
      if (new URLSearchParams(window.location.search).get("saved")) status(t("camera.created"), "ok");
    }
  } catch (err) {
    status(errorText(err), "bad");
  }
}

init();

// The mask-plan editor. The backdrop is the camera's current picture from the API's preview
// route (raw only where the API allows it, else already masked by the saved plan); the overlay
// is drawn here; "Preview" asks the API to apply the unsaved plan, "Save" PATCHes the camera.
// Every point can also be typed (tables and text fields), so the editor works by keyboard.
import { api, errorText } from "../lib/api.js";
import { $, $$, h, svg, clear, pageData, status } from "../lib/dom.js";
import { clearErrors, showErrors } from "../lib/forms.js";
import { fit, project, unproject, resolveSide, stripPolygons, densify } from "../lib/homography.js";
import { t } from "../lib/i18n.js";

const { camera_id: cameraId } = pageData();
const form = $("#mask-form");
const overlay = $("#overlay");
const backdrop = $("#backdrop");
const stageMessage = $("#stage-message");

let width = 1600; // the picture's size in pixels (viewBox of the overlay)
let height = 900;

const state = {
  method: "blur",
  strength: null,
  default: "keep",
  polygons: [], // {action, points: [[x, y], ...]}
  drawing: [],
  calibration: [], // {image: [x, y], ground: [x|null, y|null]}
  strip: { enabled: false, action: "keep", facade: [], width: 2, side: "auto" },
  detect: { classes: [], in: "kept_area", rest: {} },
};

const round = (v, digits) => Number(v.toFixed(digits));
const tool = () => form.ownerDocument.querySelector('input[name="tool"]:checked').value;

// -- the plan <-> the state ------------------------------------------------------------------

function loadPlan(plan) {
  const p = plan || {};
  state.method = p.method || "blur";
  state.strength = p.strength ?? null;
  state.default = p.default || "keep";
  state.calibration = (p.calibration || []).map((c) => ({ image: [...c.image], ground: [...c.ground] }));
  state.polygons = [];
  state.strip = { enabled: false, action: "keep", facade: [], width: 2, side: "auto" };
  for (const zone of p.zones || []) {
    if (zone.type === "polygon") state.polygons.push({ action: zone.action, points: zone.points.map((q) => [...q]) });
    else if (zone.type === "facade_strip" && !state.strip.enabled) {
      state.strip = {
        enabled: true,
        action: zone.action,
        facade: zone.facade.map((q) => [...q]),
        width: zone.width_m,
        side: zone.side || "auto",
      };
    }
  }
  const detect = p.detect || null;
  state.detect = detect
    ? { classes: [...detect.classes], in: detect.in || "kept_area", rest: { ...detect, classes: undefined, in: undefined } }
    : { classes: [], in: "kept_area", rest: {} };
  syncControls();
}

/** The zones in plan order: the strip first, then the polygons (later zones win). */
function zones() {
  const out = [];
  if (state.strip.enabled) {
    out.push({
      type: "facade_strip",
      action: state.strip.action,
      facade: state.strip.facade,
      width_m: state.strip.width,
      side: state.strip.side,
    });
  }
  for (const poly of state.polygons) out.push({ type: "polygon", action: poly.action, points: poly.points });
  return out;
}

function plan() {
  const p = { version: 1, method: state.method, default: state.default };
  if (state.strength !== null && state.method !== "fill") p.strength = state.strength;
  if (state.calibration.length) p.calibration = state.calibration;
  p.zones = zones();
  if (state.detect.classes.length) {
    const rest = Object.fromEntries(Object.entries(state.detect.rest).filter(([, v]) => v !== undefined));
    p.detect = { ...rest, classes: state.detect.classes, in: state.detect.in };
  }
  return p;
}

function homography() {
  const pts = state.calibration.filter((c) => c.ground.every((v) => typeof v === "number" && Number.isFinite(v)));
  return fit(pts);
}

// -- controls ----------------------------------------------------------------------------------

function syncControls() {
  $("#m-default").value = state.default;
  $("#m-method").value = state.method;
  $("#m-strength").value = state.strength ?? "";
  $("#m-strength").disabled = state.method === "fill";
  $("#m-strip").checked = state.strip.enabled;
  $("#m-strip-action").value = state.strip.action;
  $("#m-width").value = state.strip.width;
  $("#m-side").value = state.strip.side;
  for (const box of $$('input[name="detect_class"]')) box.checked = state.detect.classes.includes(box.value);
  $("#m-det-in").value = state.detect.in;
  render();
}

function numberInput(name, value, label, onChange, { step = "0.01", min, max } = {}) {
  const input = h("input", {
    type: "number",
    step,
    min,
    max,
    name,
    value: value ?? "",
    "aria-label": label,
    "data-skip": "",
  });
  input.addEventListener("change", () => {
    const v = input.value.trim() === "" ? null : Number(input.value);
    onChange(Number.isFinite(v) ? v : null);
    // Redraw the overlay only: rebuilding the tables would replace the field being typed in.
    refresh();
  });
  return input;
}

function renderTables() {
  const zoneBase = state.strip.enabled ? 1 : 0;
  // Polygons
  const list = clear($("#polygon-list"));
  state.polygons.forEach((poly, i) => {
    const zi = zoneBase + i;
    const action = h(
      "select",
      { "aria-label": t("mask.polygon_action", { n: i + 1 }), name: `mask_plan.zones.${zi}.action`, "data-skip": "" },
      h("option", { value: "anonymise", text: t("mask.action.anonymise") }),
      h("option", { value: "keep", text: t("mask.action.keep") }),
    );
    action.value = poly.action;
    action.addEventListener("change", () => { poly.action = action.value; refresh(); });
    const points = h("input", {
      name: `mask_plan.zones.${zi}.points`,
      value: poly.points.map((q) => `${round(q[0], 3)} ${round(q[1], 3)}`).join(", "),
      "aria-label": t("mask.polygon_points", { n: i + 1 }),
      "data-skip": "",
      class: "mono",
    });
    points.addEventListener("change", () => {
      const parsed = points.value
        .split(",")
        .map((pair) => pair.trim().split(/\s+/).map(Number))
        .filter((q) => q.length === 2 && q.every(Number.isFinite));
      poly.points = parsed;
      refresh();
    });
    const remove = h("button", { type: "button", class: "btn btn-small btn-quiet", text: t("common.delete") });
    remove.addEventListener("click", () => { state.polygons.splice(i, 1); render(); });
    list.append(
      h("li", { dataset: { field: `mask_plan.zones.${zi}` } },
        h("span", { text: `${t("mask.polygon")} ${i + 1} ` }), action, " ", points, " ", remove),
    );
  });
  if (!state.polygons.length) list.append(h("li", { class: "muted", text: t("mask.no_polygons") }));

  // Calibration
  const cal = clear($("#calibration-table tbody"));
  state.calibration.forEach((c, i) => {
    const base = `mask_plan.calibration.${i}`;
    const remove = h("button", { type: "button", class: "btn btn-small btn-quiet", text: t("common.delete") });
    remove.addEventListener("click", () => { state.calibration.splice(i, 1); render(); });
    cal.append(
      h("tr", { dataset: { field: base } },
        h("th", { scope: "row", text: String(i) }),
        h("td", {},
          numberInput(`${base}.image.0`, round(c.image[0], 4), t("mask.image_x_n", { n: i }), (v) => { c.image[0] = v ?? 0; }, { step: "0.001", min: 0, max: 1 }),
          numberInput(`${base}.image.1`, round(c.image[1], 4), t("mask.image_y_n", { n: i }), (v) => { c.image[1] = v ?? 0; }, { step: "0.001", min: 0, max: 1 })),
        h("td", {}, numberInput(`${base}.ground`, c.ground[0], t("mask.ground_x_n", { n: i }), (v) => { c.ground[0] = v; })),
        h("td", {}, numberInput(`${base}.ground.1`, c.ground[1], t("mask.ground_y_n", { n: i }), (v) => { c.ground[1] = v; })),
        h("td", {}, remove)),
    );
  });
  const addRow = h("button", { type: "button", class: "btn btn-small", text: t("mask.add_point") });
  addRow.addEventListener("click", () => { state.calibration.push({ image: [0.5, 0.5], ground: [null, null] }); render(); });
  cal.append(h("tr", {}, h("td", { colspan: 5 }, addRow)));

  // Facade
  const stripField = $("#m-strip").closest("fieldset");
  stripField.dataset.field = state.strip.enabled ? "mask_plan.zones.0" : "mask_plan.facade";
  $("#m-width").name = "mask_plan.zones.0.width_m";
  $("#m-side").name = "mask_plan.zones.0.side";
  const fac = clear($("#facade-table tbody"));
  state.strip.facade.forEach((q, j) => {
    const base = `mask_plan.zones.0.facade.${j}`;
    const remove = h("button", { type: "button", class: "btn btn-small btn-quiet", text: t("common.delete") });
    remove.addEventListener("click", () => { state.strip.facade.splice(j, 1); render(); });
    fac.append(
      h("tr", { dataset: { field: base } },
        h("th", { scope: "row", text: String(j) }),
        h("td", {}, numberInput(`${base}`, q[0], t("mask.facade_x_n", { n: j }), (v) => { q[0] = v ?? 0; })),
        h("td", {}, numberInput(`${base}.1`, q[1], t("mask.facade_y_n", { n: j }), (v) => { q[1] = v ?? 0; })),
        h("td", {}, remove)),
    );
  });
  const addFacade = h("button", { type: "button", class: "btn btn-small", text: t("mask.add_facade_point") });
  addFacade.addEventListener("click", () => { state.strip.facade.push([0, 0]); state.strip.enabled = true; syncControls(); });
  fac.append(h("tr", {}, h("td", { colspan: 4 }, addFacade)));
}

// -- the overlay -----------------------------------------------------------------------------

const px = ([x, y]) => `${x * width},${y * height}`;

function renderOverlay() {
  clear(overlay);
  overlay.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const hm = homography();
  if (state.strip.enabled && hm && state.strip.facade.length >= 2) {
    const side = resolveSide(state.strip.side, state.strip.facade, state.calibration.filter((c) => c.ground.every(Number.isFinite)));
    $("#side-note").hidden = Boolean(side);
    if (side) {
      for (const poly of stripPolygons(state.strip.facade, state.strip.width, side)) {
        const pts = densify(poly).map((g) => project(hm, g)).filter(Boolean);
        if (pts.length >= 3) overlay.append(svg("polygon", { class: `strip ${state.strip.action}`, points: pts.map(px).join(" ") }));
      }
    }
    const line = state.strip.facade.map((g) => project(hm, g)).filter(Boolean);
    overlay.append(svg("polyline", { class: "facade", points: line.map(px).join(" ") }));
  }
  for (const poly of state.polygons) {
    overlay.append(svg("polygon", { class: `poly ${poly.action === "keep" ? "keep" : ""}`, points: poly.points.map(px).join(" ") }));
  }
  if (state.drawing.length) {
    overlay.append(svg("polyline", { class: "poly drawing", points: state.drawing.map(px).join(" ") }));
    for (const q of state.drawing) overlay.append(svg("circle", { class: "vertex", cx: q[0] * width, cy: q[1] * height, r: 5 }));
  }
  state.calibration.forEach((c, i) => {
    const [x, y] = [c.image[0] * width, c.image[1] * height];
    overlay.append(svg("circle", { class: "calib", cx: x, cy: y, r: 8 }));
    overlay.append(svg("text", { class: "label", x: x + 11, y: y - 9, text: String(i) }));
  });
}

function refresh() {
  renderOverlay();
  hint();
  $("#m-json").value = JSON.stringify(plan(), null, 2);
}

function render() {
  renderTables();
  refresh();
}

function hint() {
  const hm = homography();
  const messages = {
    polygon: t("mask.hint.polygon"),
    calibration: t("mask.hint.calibration"),
    facade: hm ? t("mask.hint.facade") : t("mask.hint.facade_needs_calibration"),
    none: t("mask.hint.none"),
  };
  $("#tool-hint").textContent = messages[tool()];
}

// -- drawing -------------------------------------------------------------------------------------

overlay.addEventListener("click", (event) => {
  const box = overlay.getBoundingClientRect();
  const x = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  const y = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
  const point = [round(x, 4), round(y, 4)];
  switch (tool()) {
    case "polygon":
      state.drawing.push(point);
      break;
    case "calibration": {
      state.calibration.push({ image: point, ground: [null, null] });
      render();
      // The ground position is measured on site: go straight to typing it.
      $(`[name="mask_plan.calibration.${state.calibration.length - 1}.ground"]`)?.focus();
      return;
    }
    case "facade": {
      const hm = homography();
      if (!hm) {
        status(t("mask.hint.facade_needs_calibration"), "bad");
        return;
      }
      // A click on a calibration marker takes that point's measured ground position exactly
      // (the foot of the wall is where one measures); elsewhere the click goes through the fit.
      const near = state.calibration.find(
        (c) =>
          c.ground.every(Number.isFinite) &&
          Math.hypot((c.image[0] - x) * box.width, (c.image[1] - y) * box.height) <= 12,
      );
      const g = near ? near.ground : unproject(hm, point);
      if (!g) return;
      state.strip.facade.push([round(g[0], 2), round(g[1], 2)]);
      state.strip.enabled = true;
      syncControls();
      return;
    }
    default:
      return;
  }
  render();
});

function finishPolygon() {
  if (state.drawing.length < 3) {
    status(t("mask.polygon_needs_3"), "bad");
    return;
  }
  state.polygons.push({ action: "anonymise", points: state.drawing });
  state.drawing = [];
  status("");
  render();
}

$("#finish-polygon").addEventListener("click", finishPolygon);
overlay.addEventListener("dblclick", (event) => { event.preventDefault(); finishPolygon(); });
$("#undo-point").addEventListener("click", () => {
  const current = tool();
  if (current === "polygon" && state.drawing.length) state.drawing.pop();
  else if (current === "calibration") state.calibration.pop();
  else if (current === "facade") state.strip.facade.pop();
  render();
});
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea")) return;
  if (event.key === "Enter" && state.drawing.length) finishPolygon();
  if (event.key === "Escape" && state.drawing.length) { state.drawing = []; render(); }
});
for (const radio of $$('input[name="tool"]')) radio.addEventListener("change", () => { state.drawing = []; refresh(); });

$("#m-default").addEventListener("change", (e) => { state.default = e.target.value; render(); });
$("#m-method").addEventListener("change", (e) => { state.method = e.target.value; syncControls(); });
$("#m-strength").addEventListener("change", (e) => {
  const v = e.target.value.trim();
  state.strength = v === "" ? null : Number(v);
  render();
});
$("#m-strip").addEventListener("change", (e) => { state.strip.enabled = e.target.checked; render(); });
$("#m-strip-action").addEventListener("change", (e) => { state.strip.action = e.target.value; render(); });
$("#m-width").addEventListener("change", (e) => { state.strip.width = Number(e.target.value); render(); });
$("#m-side").addEventListener("change", (e) => { state.strip.side = e.target.value; render(); });
for (const box of $$('input[name="detect_class"]')) {
  box.addEventListener("change", () => {
    state.detect.classes = $$('input[name="detect_class"]').filter((b) => b.checked).map((b) => b.value);
    render();
  });
}
$("#m-det-in").addEventListener("change", (e) => { state.detect.in = e.target.value; render(); });
$("#clear-btn").addEventListener("click", () => { loadPlan(null); status(t("mask.cleared")); });

// -- API: backdrop, preview, save -------------------------------------------------------------------

const renamePlan = (field) => (field.startsWith("plan") ? `mask_plan${field.slice(4)}` : field);

async function previewImage(body) {
  const response = await api(`/api/v1/cameras/${cameraId}/mask-preview`, { method: "POST", json: body, as: "response" });
  return { url: URL.createObjectURL(await response.blob()), raw: response.headers.get("x-raw-frame") === "1" };
}

async function loadBackdrop() {
  try {
    const { url, raw } = await previewImage({ plan: null, apply: false, overlay: false });
    backdrop.addEventListener("load", () => {
      width = backdrop.naturalWidth;
      height = backdrop.naturalHeight;
      stageMessage.hidden = true;
      render();
    }, { once: true });
    backdrop.src = url;
    $("#backdrop-note").textContent = raw ? t("mask.backdrop_raw") : t("mask.backdrop_masked");
  } catch (err) {
    stageMessage.textContent = `${t("mask.no_frame")} ${errorText(err)}`;
    render();
  }
}

$("#preview-btn").addEventListener("click", async () => {
  clearErrors(form);
  const button = $("#preview-btn");
  button.disabled = true;
  status(t("mask.previewing"));
  try {
    const { url } = await previewImage({ plan: plan(), apply: true, overlay: true });
    const img = $("#preview");
    img.src = url;
    $("#preview-box").hidden = false;
    status(t("mask.preview_ready"), "ok");
  } catch (err) {
    status("");
    showErrors(form, err, { rename: renamePlan });
  } finally {
    button.disabled = false;
  }
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  if (state.drawing.length) finishPolygon();
  const button = $("#save-btn");
  button.disabled = true;
  try {
    const camera = await api(`/api/v1/cameras/${cameraId}`, { method: "PATCH", json: { mask_plan: plan() } });
    loadPlan(camera.mask_plan);
    status(t("mask.saved", { hash: (camera.mask_plan_hash || "").slice(0, 12) }), "ok");
  } catch (err) {
    status("");
    showErrors(form, err);
  } finally {
    button.disabled = false;
  }
});

async function init() {
  try {
    const camera = await api(`/api/v1/cameras/${cameraId}`);
    loadPlan(camera.mask_plan);
  } catch (err) {
    status(errorText(err), "bad");
  }
  await loadBackdrop();
}

init();

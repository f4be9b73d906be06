// Police search around an incident: the API's `cameras/near` (owner, contact, purpose,
// retention, whether footage exists; never stream details), on an OpenStreetMap map where the
// network allows tiles, otherwise on a plain coordinate plot; then an export request.
import { api, errorText } from "../lib/api.js";
import { $, h, svg, clear, emptyRow, status, toLocalInput } from "../lib/dom.js";
import { clearErrors, readForm, showErrors } from "../lib/forms.js";
import { t, tv } from "../lib/i18n.js";

const form = $("#search-form");
const exportForm = $("#export-form");
const mapBox = $("#map");
const plot = $("#plot");
const selected = new Set();
let results = [];
let search = null; // the query of the shown results
let map = null; // Leaflet, while tiles work
let layers = null;

const EARTH_M = 6371008.8;
const mPerDegLat = (Math.PI / 180) * EARTH_M;

/** Metres east/north of the centre (equirectangular: exact enough within a few km). */
function offset(centre, lat, lon) {
  const east = (lon - centre.lon) * mPerDegLat * Math.cos((centre.lat * Math.PI) / 180);
  const north = (lat - centre.lat) * mPerDegLat;
  return [east, north];
}

function centreFromInputs() {
  return { lat: Number($("#s-lat").value), lon: Number($("#s-lon").value), radius: Number($("#s-radius").value) || 250 };
}

function setCentre(lat, lon) {
  $("#s-lat").value = lat.toFixed(6);
  $("#s-lon").value = lon.toFixed(6);
  draw();
}

// -- the map (Leaflet + tiles) and its fallback (SVG plot) ----------------------------------

function useFallback(reason) {
  if (map) {
    map.remove();
    map = null;
  }
  mapBox.hidden = true;
  plot.removeAttribute("hidden"); // an SVG element has no `hidden` property
  $("#map-note").textContent = reason;
  draw();
}

function initMap() {
  const tiles = mapBox.dataset.tiles;
  if (!tiles || !window.L) {
    useFallback(t("search.no_tiles"));
    return;
  }
  const c = centreFromInputs();
  map = window.L.map(mapBox, { zoomControl: true }).setView([c.lat, c.lon], 16);
  let loaded = 0;
  const layer = window.L.tileLayer(tiles, {
    maxZoom: 19,
    attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>',
    // The page sends no Referer; OpenStreetMap's tile policy asks for one, so tiles get the origin.
    referrerPolicy: "strict-origin",
  });
  layer.on("tileload", () => { loaded += 1; });
  layer.on("tileerror", () => {
    if (!loaded) useFallback(t("search.tiles_failed"));
  });
  layer.addTo(map);
  // A closed network may neither answer nor fail quickly: give tiles a few seconds.
  setTimeout(() => { if (map && !loaded) useFallback(t("search.tiles_failed")); }, 4000);
  layers = window.L.layerGroup().addTo(map);
  map.on("click", (e) => setCentre(e.latlng.lat, e.latlng.lng));
  draw();
}

function drawMap(c) {
  layers.clearLayers();
  window.L.circle([c.lat, c.lon], { radius: c.radius, color: "#0b5cad", weight: 2, fillOpacity: 0.05 }).addTo(layers);
  window.L.circleMarker([c.lat, c.lon], { radius: 7, color: "#fff", fillColor: "#c62828", fillOpacity: 1, weight: 2 })
    .bindTooltip(t("search.incident")).addTo(layers);
  for (const cam of results) {
    const footage = cam.footage?.available;
    window.L.circleMarker([cam.lat, cam.lon], {
      radius: 7,
      color: selected.has(cam.id) ? "#f0a500" : "#fff",
      weight: selected.has(cam.id) ? 3 : 1.5,
      fillColor: footage ? "#1d6b32" : "#14263b",
      fillOpacity: 1,
    }).bindTooltip(`${cam.name} (${Math.round(cam.distance_m)} m)`).on("click", () => toggle(cam.id)).addTo(layers);
  }
}

const SIZE = 460;

function drawPlot(c) {
  clear(plot);
  plot.setAttribute("viewBox", `0 0 ${SIZE} ${SIZE}`);
  const mid = SIZE / 2;
  const scale = (SIZE / 2 - 30) / (c.radius * 1.15); // px per metre
  for (const f of [0.5, 1]) {
    plot.append(svg("circle", { class: "ring", cx: mid, cy: mid, r: c.radius * f * scale }));
  }
  plot.append(svg("line", { class: "grid", x1: mid, y1: 10, x2: mid, y2: SIZE - 10 }));
  plot.append(svg("line", { class: "grid", x1: 10, y1: mid, x2: SIZE - 10, y2: mid }));
  plot.append(svg("text", { class: "axis-label", x: mid + 4, y: 22, text: t("search.north") }));
  plot.append(svg("text", { class: "axis-label", x: mid + c.radius * scale - 40, y: mid - 6, text: `${Math.round(c.radius)} m` }));
  plot.append(svg("text", { class: "axis-label", x: 8, y: SIZE - 8, text: `${c.lat.toFixed(5)}, ${c.lon.toFixed(5)}` }));
  plot.append(svg("circle", { class: "incident", cx: mid, cy: mid, r: 7 }, svg("title", { text: t("search.incident") })));
  for (const cam of results) {
    const [e, n] = offset(c, cam.lat, cam.lon);
    const x = mid + e * scale;
    const y = mid - n * scale;
    const dot = svg("circle", {
      class: `cam${cam.footage?.available ? " has-footage" : ""}${selected.has(cam.id) ? " selected" : ""}`,
      cx: x,
      cy: y,
      r: 7,
      tabindex: 0,
      role: "button",
      "aria-label": `${cam.name}, ${Math.round(cam.distance_m)} m`,
      dataset: { cameraId: cam.id },
    }, svg("title", { text: `${cam.name} (${Math.round(cam.distance_m)} m)` }));
    dot.addEventListener("click", (event) => { event.stopPropagation(); toggle(cam.id); });
    dot.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); toggle(cam.id); }
    });
    plot.append(dot, svg("text", { x: x + 10, y: y + 4, text: cam.name }));
  }
}

plot.addEventListener("click", (event) => {
  // Clicking the plot moves the incident point (metres back to degrees).
  const c = centreFromInputs();
  const box = plot.getBoundingClientRect();
  const scale = (SIZE / 2 - 30) / (c.radius * 1.15);
  const px = ((event.clientX - box.left) / box.width) * SIZE - SIZE / 2;
  const py = ((event.clientY - box.top) / box.height) * SIZE - SIZE / 2;
  const lat = c.lat + (-py / scale) / mPerDegLat;
  const lon = c.lon + (px / scale) / (mPerDegLat * Math.cos((c.lat * Math.PI) / 180));
  setCentre(lat, lon);
});

function draw() {
  const c = centreFromInputs();
  if (!Number.isFinite(c.lat) || !Number.isFinite(c.lon)) return;
  if (map) drawMap(c);
  else drawPlot(c);
}

// -- results and selection -------------------------------------------------------------------

function toggle(id) {
  if (selected.has(id)) selected.delete(id);
  else selected.add(id);
  const box = $(`#pick-${id}`);
  if (box) box.checked = selected.has(id);
  updateRequest();
  draw();
}

function updateRequest() {
  $("#request-section").hidden = !results.length;
  const names = results.filter((r) => selected.has(r.id)).map((r) => r.name);
  $("#request-cameras").textContent = names.length
    ? t("search.selected", { names: names.join(", ") })
    : t("search.select_some");
}

function showResults() {
  const tbody = clear($("#results tbody"));
  for (const cam of results) {
    const box = h("input", { type: "checkbox", id: `pick-${cam.id}`, "aria-label": t("search.select_camera", { name: cam.name }) });
    box.checked = selected.has(cam.id);
    box.addEventListener("change", () => toggle(cam.id));
    const footage = cam.footage
      ? cam.footage.available
        ? h("span", { class: "badge badge-ok", text: t("search.footage_yes", { n: cam.footage.segments }) })
        : h("span", { class: "badge badge-muted", text: t("search.footage_no") })
      : "–";
    const owner = [cam.owner.organisation, cam.owner.contact_name, cam.owner.contact_email, cam.owner.contact_phone].filter(Boolean).join(" · ");
    tbody.append(h("tr", { dataset: { cameraId: cam.id } },
      h("td", {}, box),
      h("td", {}, h("label", { for: `pick-${cam.id}`, text: cam.name }), h("div", { class: "muted small", text: `${cam.address || ""} · ${cam.purpose}` })),
      h("td", { class: "small", text: owner }),
      h("td", { class: "num", text: `${Math.round(cam.distance_m)} m` }),
      h("td", { text: tv("mode", cam.mode) }),
      h("td", { class: "num", text: t("common.hours", { n: cam.retention_hours }) }),
      h("td", {}, footage)));
  }
  if (!results.length) emptyRow(tbody, 7, t("search.none"));
  $("#results-summary").textContent = t("search.found", { n: results.length });
  updateRequest();
  draw();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const query = readForm(form);
  try {
    const page = await api("/api/v1/cameras/near", { query: { ...query, limit: 200 } });
    results = page.items;
    search = query;
    for (const id of [...selected]) if (!results.some((r) => r.id === id)) selected.delete(id);
    for (const r of results) if (r.footage?.available && !selected.size) selected.add(r.id);
    showResults();
    status("");
  } catch (err) {
    showErrors(form, err);
  }
});

for (const id of ["#s-lat", "#s-lon", "#s-radius"]) {
  $(id).addEventListener("change", () => {
    draw();
    if (map) {
      const c = centreFromInputs();
      map.setView([c.lat, c.lon]);
    }
  });
}

exportForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(exportForm);
  const body = {
    ...readForm(exportForm),
    camera_ids: [...selected],
    start: search?.start,
    end: search?.end,
  };
  try {
    const created = await api("/api/v1/exports", { method: "POST", json: body });
    window.location.assign(`/exports/${created.id}`);
  } catch (err) {
    // A refused camera is named as camera_ids.<n>: show it next to the camera list.
    showErrors(exportForm, err);
  }
});

const end = new Date();
$("#s-end").value = toLocalInput(end);
$("#s-start").value = toLocalInput(new Date(end.getTime() - 2 * 3600e3));
try {
  initMap();
} catch (err) {
  useFallback(`${t("search.tiles_failed")} (${errorText(err)})`);
}

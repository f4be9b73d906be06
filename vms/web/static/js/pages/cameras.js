// Camera list: filters go to the API (q, mode, status, permit_status); the worker state comes
// from each camera's status route and is filtered here (it is not a registry field).
import { api, errorText } from "../lib/api.js";
import { $, h, can, clear, emptyRow, status } from "../lib/dom.js";
import { t, tv } from "../lib/i18n.js";

const PAGE = 25;
const form = $("#camera-filters");
const tbody = $("#camera-table tbody");
let offset = 0;

const STATE_BADGE = {
  streaming: "ok",
  starting: "info",
  reconnecting: "warn",
  stalled: "warn",
  blocked: "bad",
  stopped: "muted",
};
const PERMIT_BADGE = { ok: "ok", expiring: "warn", draft: "warn", conflict: "bad" };

export function badge(kind, text) {
  return h("span", { class: `badge badge-${kind}`, text });
}

function readFilters() {
  const data = new FormData(form);
  return Object.fromEntries([...data.entries()].filter(([, v]) => v !== ""));
}

async function statusOf(camera) {
  if (camera.status === "decommissioned") return null;
  try {
    return await api(`/api/v1/cameras/${camera.id}/status`);
  } catch {
    return null;
  }
}

function row(camera, st) {
  const name = can("camera_edit")
    ? h("a", { href: `/cameras/${camera.id}`, text: camera.name })
    : camera.name;
  const state = st
    ? badge(STATE_BADGE[st.state] || "muted", tv("state", st.state))
    : badge("muted", tv("camera_status", camera.status));
  const reasons = st && st.reasons.length ? st.reasons.join("; ") : st?.last_error || "";
  const links = [];
  if (can("mask_editor")) links.push(h("a", { href: `/cameras/${camera.id}/mask`, text: t("cameras.mask") }));
  if (can("live_camera") && st?.may_view_live) links.push(h("a", { href: `/live/${camera.id}`, text: t("cameras.live") }));
  if (can("recordings")) links.push(h("a", { href: `/recordings?camera=${camera.id}`, text: t("cameras.recordings") }));
  return h(
    "tr",
    { dataset: { cameraId: camera.id, state: st?.state || "" } },
    h("td", {}, name, h("div", { class: "muted small", text: camera.location?.address || "" })),
    h("td", { text: tv("mode", camera.mode) }),
    h("td", {}, badge(PERMIT_BADGE[camera.permit_status] || "bad", tv("permit", camera.permit_status))),
    h("td", {}, state),
    h("td", { class: "small", text: reasons }),
    h("td", { class: "num", text: String(camera.retention_hours) }),
    h("td", { class: "actions" }, links),
  );
}

async function load() {
  const filters = readFilters();
  const wantState = filters.state;
  delete filters.state;
  status("");
  try {
    const page = await api("/api/v1/cameras", { query: { ...filters, limit: PAGE, offset } });
    const states = await Promise.all(page.items.map(statusOf));
    clear(tbody);
    let shown = 0;
    page.items.forEach((camera, i) => {
      if (wantState && states[i]?.state !== wantState) return;
      tbody.append(row(camera, states[i]));
      shown += 1;
    });
    if (!shown) emptyRow(tbody, 7, t("cameras.none"));
    $("#camera-count").textContent = t("common.count", {
      from: page.total ? offset + 1 : 0,
      to: offset + page.items.length,
      total: page.total,
    });
    pager(page.total);
  } catch (err) {
    status(errorText(err), "bad");
  }
}

function pager(total) {
  const nav = clear($("#camera-pager"));
  const prev = h("button", { type: "button", class: "btn btn-small", text: t("common.previous") });
  const next = h("button", { type: "button", class: "btn btn-small", text: t("common.next") });
  prev.disabled = offset === 0;
  next.disabled = offset + PAGE >= total;
  prev.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  next.addEventListener("click", () => { offset += PAGE; load(); });
  nav.append(prev, next);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  offset = 0;
  load();
});
for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => { offset = 0; load(); });

load();
// Status changes on its own (reconnects, policy): refresh while the page is open.
setInterval(() => { if (!document.hidden) load(); }, 10000);

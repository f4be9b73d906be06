// Live grid: the masked MJPEG of each camera the operator may view, in an <img> (the session
// cookie authenticates it; same origin). A browser opens at most six connections to one host,
// and every MJPEG view holds one: four tiles per page leave room for the API calls.
import { api, errorText } from "../lib/api.js";
import { $, h, can, clear, status } from "../lib/dom.js";
import { t, tv } from "../lib/i18n.js";

const PER_PAGE = 4;
const grid = $("#live-grid");
let cameras = [];
let page = 0;

function tile(camera, st) {
  const frame = h("div", { class: "frame" });
  if (st && st.may_view_live) {
    const img = h("img", {
      src: `/api/v1/cameras/${camera.id}/live.mjpeg`,
      alt: t("live.img_alt", { name: camera.name }),
      dataset: { cameraId: camera.id },
    });
    img.addEventListener("error", () => {
      clear(frame).append(h("p", { text: t("live.stream_ended") }));
    });
    frame.append(img);
  } else {
    const why = st ? st.reasons.join("; ") || tv("state", st.state) : t("live.no_status");
    frame.append(h("p", { text: `${t("live.not_allowed")}: ${why}` }));
  }
  const state = st ? h("span", { class: `badge badge-${st.state === "streaming" ? "ok" : st.state === "blocked" ? "bad" : "warn"}`, text: tv("state", st.state) }) : null;
  const links = h("span", { class: "actions" },
    can("live_camera") && st?.may_view_live ? h("a", { href: `/live/${camera.id}`, text: t("live.open") }) : null,
    can("recordings") ? h("a", { href: `/recordings?camera=${camera.id}`, text: t("page.recordings") }) : null);
  return h("figure", { class: "tile", dataset: { cameraId: camera.id } }, frame,
    h("figcaption", {}, h("span", {}, h("strong", { text: camera.name }), " ", state), links));
}

async function show() {
  // Removing the old <img> elements closes their streams before new ones open.
  clear(grid);
  const slice = cameras.slice(page * PER_PAGE, (page + 1) * PER_PAGE);
  const states = await Promise.all(
    slice.map((c) => api(`/api/v1/cameras/${c.id}/status`).catch(() => null)),
  );
  slice.forEach((camera, i) => grid.append(tile(camera, states[i])));
  if (!slice.length) grid.append(h("p", { class: "muted", text: t("live.none") }));
  const nav = clear($("#live-pager"));
  const pages = Math.ceil(cameras.length / PER_PAGE);
  if (pages > 1) {
    for (let i = 0; i < pages; i += 1) {
      const b = h("button", { type: "button", class: "btn btn-small", text: String(i + 1), "aria-label": t("live.page", { n: i + 1 }) });
      if (i === page) b.setAttribute("aria-current", "page");
      b.addEventListener("click", () => { page = i; show(); });
      nav.append(b);
    }
  }
}

async function init() {
  try {
    const list = await api("/api/v1/cameras", { query: { status: "active", limit: 200 } });
    cameras = list.items.filter((c) => c.mode !== "recording");
    await show();
  } catch (err) {
    status(errorText(err), "bad");
  }
}

init();

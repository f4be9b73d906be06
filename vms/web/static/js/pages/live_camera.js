// One camera, large: the masked live view and the worker's status, refreshed every 2 s.
import { api, errorText } from "../lib/api.js";
import { $, h, clear, fmtDateTime, pageData, status } from "../lib/dom.js";
import { lang, t, tv } from "../lib/i18n.js";

const { camera_id: cameraId } = pageData();
const img = $("#live-img");
let streaming = false;

function show(st) {
  const list = clear($("#status-list"));
  const row = (k, v) => list.append(h("dt", { text: k }), h("dd", { text: v }));
  row(t("camera.state"), tv("state", st.state));
  if (st.reasons.length) row(t("camera.reasons"), st.reasons.join("; "));
  row(t("live.resolution"), st.resolution ? `${st.resolution.width}×${st.resolution.height}` : "–");
  row(t("live.fps"), `${st.output_fps.toFixed(1)} / ${st.input_fps.toFixed(1)}`);
  row(t("live.recording"), tv("recording", st.recording));
  row(t("live.viewers"), String(st.live_viewers));
  row(t("live.last_frame"), fmtDateTime(st.last_frame_at, lang));
  row(t("live.reconnects"), String(st.reconnects));
  if (st.last_error) row(t("live.last_error"), st.last_error);
  if (st.may_view_live && !streaming) {
    streaming = true;
    img.src = `/api/v1/cameras/${cameraId}/live.mjpeg`;
    $("#live-caption").textContent = t("live.masked_note");
  } else if (!st.may_view_live) {
    streaming = false;
    img.removeAttribute("src");
    $("#live-caption").textContent = `${t("live.not_allowed")}: ${st.reasons.join("; ")}`;
  }
}

async function refresh() {
  try {
    show(await api(`/api/v1/cameras/${cameraId}/status`));
    status("");
  } catch (err) {
    status(errorText(err), "bad");
  }
}

img.addEventListener("error", () => {
  streaming = false; // the next status refresh opens the stream again if allowed
});
$("#fullscreen-btn").addEventListener("click", () => {
  $("#live-frame").requestFullscreen?.().catch(() => {});
});

refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 2000);

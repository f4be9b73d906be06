// A camera's recordings: segments and gaps on a timeline (SVG), the gaps in a table as well,
// and playback of the masked MP4 segments one after the other.
import { api, apiAll, errorText } from "../lib/api.js";
import { $, h, svg, clear, emptyRow, fmtDateTime, fmtTime, status, toLocalInput } from "../lib/dom.js";
import { clearErrors, readForm, showErrors } from "../lib/forms.js";
import { lang, t, tv } from "../lib/i18n.js";

const form = $("#rec-filters");
const timeline = $("#timeline");
const player = $("#player");
const W = 1000;
const H = 90;
let segments = [];
let current = -1;
let range = null;

async function loadCameras() {
  const cameras = await apiAll("/api/v1/cameras");
  const select = $("#r-camera");
  for (const c of cameras) if (c.mode !== "live") select.append(h("option", { value: c.id, text: c.name }));
  const wanted = new URLSearchParams(window.location.search).get("camera");
  if (wanted) select.value = wanted;
  const end = new Date();
  $("#r-end").value = toLocalInput(end);
  $("#r-start").value = toLocalInput(new Date(end.getTime() - 3600e3));
}

function x(time) {
  const [a, b] = range;
  return ((new Date(time).getTime() - a) / (b - a)) * W;
}

function drawTimeline(data) {
  clear(timeline);
  timeline.setAttribute("viewBox", `0 0 ${W} ${H}`);
  timeline.setAttribute("preserveAspectRatio", "none");
  timeline.append(svg("line", { class: "axis", x1: 0, y1: 60, x2: W, y2: 60 }));
  for (const seg of data.segments) {
    const x0 = x(seg.start);
    const x1 = x(seg.end);
    const rect = svg("rect", { class: "seg", x: Math.min(x0, W - 1), y: 20, width: Math.max(1, Math.min(W, x1) - x0), height: 36 },
      svg("title", { text: `${fmtTime(seg.start, lang)} – ${fmtTime(seg.end, lang)}` }));
    timeline.append(rect);
  }
  for (const gap of data.gaps) {
    const x0 = Math.max(0, x(gap.start));
    const x1 = Math.min(W, x(gap.end || range[1]));
    timeline.append(svg("rect", { class: "gap", x: x0, y: 14, width: Math.max(2, x1 - x0), height: 48, dataset: { reason: gap.reason } },
      svg("title", { text: `${tv("gap", gap.reason)}: ${fmtTime(gap.start, lang)} – ${gap.end ? fmtTime(gap.end, lang) : "…"}` })));
  }
  const span = range[1] - range[0];
  for (let i = 0; i <= 6; i += 1) {
    const at = range[0] + (span * i) / 6;
    const tx = (W * i) / 6;
    timeline.append(svg("text", { class: "tick", x: Math.min(W - 50, Math.max(0, tx - 25)), y: 78, text: fmtTime(new Date(at).toISOString(), lang) }));
  }
  if (current >= 0) {
    const cx = x(segments[current].start);
    timeline.append(svg("line", { class: "cursor", x1: cx, y1: 8, x2: cx, y2: 66 }));
  }
}

function drawGaps(gaps) {
  const tbody = clear($("#gap-table tbody"));
  for (const g of gaps) {
    tbody.append(h("tr", { dataset: { reason: g.reason } },
      h("td", { text: fmtDateTime(g.start, lang) }),
      h("td", { text: g.end ? fmtDateTime(g.end, lang) : t("recordings.ongoing") }),
      h("td", { text: `${tv("gap", g.reason)}${g.detail ? ` (${g.detail})` : ""}` })));
  }
  if (!gaps.length) emptyRow(tbody, 3, t("recordings.no_gaps"));
}

function play(index, offsetSeconds = 0) {
  if (index < 0 || index >= segments.length) return;
  current = index;
  const seg = segments[index];
  player.src = `/api/v1/recordings/${seg.id}/video`;
  player.addEventListener("loadedmetadata", () => {
    if (offsetSeconds > 0) player.currentTime = Math.min(offsetSeconds, player.duration || offsetSeconds);
    player.play().catch(() => {});
  }, { once: true });
  $("#player-caption").textContent = t("recordings.playing", {
    start: fmtDateTime(seg.start, lang),
    end: fmtTime(seg.end, lang),
    n: index + 1,
    total: segments.length,
  });
  drawTimeline({ segments, gaps: lastGaps });
}

let lastGaps = [];

async function load() {
  clearErrors(form);
  const query = readForm(form);
  if (!query.camera_id) return;
  try {
    const first = await api("/api/v1/recordings", { query: { ...query, limit: 500 } });
    let all = first.segments;
    // Long ranges hold more segments than one page.
    for (let offset = 500; offset < first.total && offset < 5000; offset += 500) {
      const more = await api("/api/v1/recordings", { query: { ...query, limit: 500, offset } });
      all = all.concat(more.segments);
    }
    // Zoom the timeline to where there is something to see (the query range may be days).
    const qStart = new Date(first.start).getTime();
    const qEnd = new Date(first.end).getTime();
    const starts = [...all, ...first.gaps].map((x) => new Date(x.start).getTime());
    const earliest = starts.length ? Math.max(qStart, Math.min(...starts)) : qStart;
    range = [Math.max(qStart, earliest - (qEnd - earliest) * 0.05), qEnd];
    segments = all;
    lastGaps = first.gaps;
    current = -1;
    drawTimeline({ segments, gaps: first.gaps });
    drawGaps(first.gaps);
    $("#tl-summary").textContent = t("recordings.summary", { segments: first.total, gaps: first.gaps.length });
    status("");
  } catch (err) {
    showErrors(form, err);
  }
}

timeline.addEventListener("click", (event) => {
  if (!range || !segments.length) return;
  const box = timeline.getBoundingClientRect();
  const at = range[0] + ((event.clientX - box.left) / box.width) * (range[1] - range[0]);
  let index = segments.findIndex((s) => new Date(s.start).getTime() <= at && at < new Date(s.end).getTime());
  if (index < 0) {
    // Between segments: play what comes next, or (after the last one) the last one. A short
    // segment is drawn at least one unit wide, so a click on it can land just past its end.
    index = segments.findIndex((s) => new Date(s.start).getTime() > at);
    if (index < 0) index = segments.length - 1;
    play(index);
    return;
  }
  play(index, (at - new Date(segments[index].start).getTime()) / 1000);
});

player.addEventListener("ended", () => play(current + 1));
$("#prev-seg").addEventListener("click", () => play(Math.max(0, current - 1)));
$("#next-seg").addEventListener("click", () => play(current < 0 ? 0 : current + 1));
form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
$("#r-camera").addEventListener("change", load);

loadCameras().then(load).catch((err) => status(errorText(err), "bad"));

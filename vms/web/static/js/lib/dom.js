// Small DOM helpers. Elements are built with textContent and setAttribute only: no HTML
// strings, so data from the API can never become markup (and no inline style: the CSP forbids it).

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function pageData() {
  return JSON.parse($("#page-data").textContent);
}

export function can(page) {
  return pageData().can.includes(page);
}

/** A short status line at the top of the page (polite live region). */
export function status(message, kind = "") {
  const box = $("#page-status");
  if (!box) return;
  box.className = `notice ${kind}`.trim();
  box.textContent = message;
  box.hidden = !message;
}

export function emptyRow(tbody, columns, message) {
  tbody.append(h("tr", {}, h("td", { colspan: columns, class: "empty", text: message })));
}

// -- dates: the API speaks ISO 8601 with an offset; inputs speak local wall-clock time ---------

const pad = (n) => String(n).padStart(2, "0");

/** A Date as the value of an <input type="datetime-local"> (local time, seconds). */
export function toLocalInput(date) {
  const d = new Date(date);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** The value of a datetime-local input as an ISO string with an offset (UTC). */
export function fromLocalInput(value) {
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toISOString();
}

export function fmtDateTime(iso, lang) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(lang === "sv" ? "sv-SE" : "en-GB", {
    dateStyle: "short",
    timeStyle: "medium",
  });
}

export function fmtTime(iso, lang) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString(lang === "sv" ? "sv-SE" : "en-GB");
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

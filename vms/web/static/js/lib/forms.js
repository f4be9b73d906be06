// Forms: read nested JSON from dotted field names, and show the API's field errors next to the
// field they name (`detail[].field`), with aria-invalid and aria-describedby.
import { h, fromLocalInput } from "./dom.js";
import { t } from "./i18n.js";

function setPath(target, path, value) {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) {
    if (typeof node[part] !== "object" || node[part] === null) node[part] = {};
    node = node[part];
  }
  node[parts.at(-1)] = value;
}

function convert(el, raw) {
  switch (el.dataset.type) {
    case "int": {
      const n = Number(raw);
      return Number.isInteger(n) ? n : raw; // let the API name a bad number
    }
    case "float": {
      const n = Number(raw);
      return Number.isFinite(n) ? n : raw;
    }
    case "datetime":
      return fromLocalInput(raw);
    default:
      return raw;
  }
}

/** The form as an object. Blank fields are left out (or null with data-blank="null"); disabled
 *  fields, file inputs and fields marked data-skip are not read. */
export function readForm(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled || "skip" in el.dataset || el.type === "file") continue;
    if (["submit", "button", "reset"].includes(el.type)) continue;
    if (el.type === "checkbox") {
      setPath(out, el.name, el.checked);
      continue;
    }
    if (el.type === "radio") {
      if (el.checked) setPath(out, el.name, el.value);
      continue;
    }
    const raw = el.value.trim();
    if (raw === "") {
      if (el.dataset.blank === "null") setPath(out, el.name, null);
      continue;
    }
    setPath(out, el.name, convert(el, raw));
  }
  return out;
}

/** Put values into the form from an object (dotted names), e.g. a camera from the API. */
export function fillForm(form, data) {
  for (const el of form.elements) {
    if (!el.name || "skip" in el.dataset || el.type === "file" || el.type === "password") continue;
    const value = el.name.split(".").reduce((node, key) => (node == null ? node : node[key]), data);
    if (value === undefined) continue;
    if (el.type === "checkbox") el.checked = Boolean(value);
    else el.value = value === null ? "" : String(value);
  }
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll(".field-error")) el.remove();
  for (const el of form.querySelectorAll('[aria-invalid="true"]')) {
    el.removeAttribute("aria-invalid");
    const ids = (el.getAttribute("aria-describedby") || "")
      .split(" ")
      .filter((id) => id && !id.startsWith("err-"));
    if (ids.length) el.setAttribute("aria-describedby", ids.join(" "));
    else el.removeAttribute("aria-describedby");
  }
  const box = form.querySelector(".form-errors");
  if (box) {
    box.hidden = true;
    box.replaceChildren();
  }
}

const esc = (value) => (window.CSS && CSS.escape ? CSS.escape(value) : value);

/** The control (or a data-field container) that best matches a dotted API field name. */
function findTarget(form, field) {
  const parts = field.split(".");
  while (parts.length) {
    const name = parts.join(".");
    const el =
      form.querySelector(`[name="${esc(name)}"]:not([type="hidden"]):not(:disabled)`) ||
      form.querySelector(`[data-field="${esc(name)}"]`);
    if (el) return { el, exact: name === field };
    parts.pop();
  }
  return null;
}

let errorSeq = 0;

/**
 * Show an error from the API on a form. `rename(field)` may map API field names to the form's
 * (e.g. the preview route's `plan.` to the camera's `mask_plan.`). Returns the number of errors.
 */
export function showErrors(form, err, { rename = (f) => f } = {}) {
  clearErrors(form);
  const items = err && Array.isArray(err.items) ? err.items : [{ msg: String(err) }];
  const unplaced = [];
  let first = null;
  for (const item of items) {
    const field = item.field ? rename(item.field) : null;
    const target = field ? findTarget(form, field) : null;
    if (!target) {
      unplaced.push(item);
      continue;
    }
    const id = `err-${(errorSeq += 1)}`;
    const text = target.exact ? item.msg : `${field}: ${item.msg}`;
    const message = h("p", { class: "field-error", id, text });
    const { el } = target;
    if (el.matches("input, select, textarea")) {
      el.setAttribute("aria-invalid", "true");
      const described = el.getAttribute("aria-describedby");
      el.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
      (el.closest(".field, td") || el).append(message);
      first ??= el;
    } else if (el.tagName === "TR") {
      el.lastElementChild.append(message);
      first ??= el.querySelector("input, select, button") || null;
    } else {
      el.append(message);
      first ??= el.querySelector("input, select, textarea, button") || null;
    }
  }
  const box = form.querySelector(".form-errors");
  if (box && (unplaced.length || !first)) {
    box.replaceChildren(
      h("p", { text: err && err.status === 403 ? t("error.forbidden") : t("error.form") }),
      h("ul", {}, unplaced.map((i) => h("li", { text: i.field ? `${i.field}: ${i.msg}` : i.msg }))),
    );
    box.hidden = false;
    box.setAttribute("tabindex", "-1");
    box.focus();
  } else if (first) {
    first.focus();
  }
  return items.length;
}

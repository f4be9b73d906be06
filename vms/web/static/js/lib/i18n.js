// Messages come from the server in the page (an application/json block, never executed).
const messages = JSON.parse(document.getElementById("i18n-data").textContent);

export const lang = document.documentElement.lang || "sv";

/** The message for `key` in the page's language, with {name} placeholders filled in. */
export function t(key, vars = {}) {
  const text = Object.hasOwn(messages, key) ? messages[key] : key;
  return text.replace(/\{(\w+)\}/g, (match, name) =>
    Object.hasOwn(vars, name) ? String(vars[name]) : match,
  );
}

/** A translated enum value (`prefix.value`), or the raw value when there is no message. */
export function tv(prefix, value) {
  if (value === null || value === undefined) return "–";
  const key = `${prefix}.${value}`;
  return Object.hasOwn(messages, key) ? messages[key] : String(value);
}

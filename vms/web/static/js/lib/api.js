// The JSON API, called with the session cookie (same origin). Unsafe methods carry the CSRF
// token the server rendered into the page; the API refuses them without it.
import { t } from "./i18n.js";

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, items) {
    super(items.map((i) => i.msg).join("; ") || `HTTP ${status}`);
    this.status = status;
    this.items = items;
  }
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    params.append(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/**
 * Call the API. `json` sends a JSON body, `form` a FormData; `as: "blob" | "response"` returns
 * the body as a Blob or the raw Response. Errors throw ApiError with the API's detail items.
 */
export async function api(path, { method = "GET", json, form, query, as } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = csrf();
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(withQuery(path, query), {
      method,
      headers,
      body,
      credentials: "same-origin",
    });
  } catch (err) {
    throw new ApiError(0, [{ code: "network", msg: t("error.network") }]);
  }
  if (response.status === 401) {
    // The session ended (expired, revoked, signed out elsewhere): sign in again, come back.
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(here)}`);
    throw new ApiError(401, [{ code: "unauthorized", msg: t("error.session") }]);
  }
  if (!response.ok) {
    let items;
    try {
      items = (await response.json()).detail;
    } catch {
      items = null;
    }
    if (!Array.isArray(items)) items = [{ code: `http_${response.status}`, msg: response.statusText }];
    throw new ApiError(response.status, items);
  }
  if (as === "response") return response;
  if (as === "blob") return response.blob();
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** Every page of a list endpoint (`{items,total,limit,offset}`), up to `max` items. */
export async function apiAll(path, query = {}, max = 2000) {
  const items = [];
  let offset = 0;
  for (;;) {
    const page = await api(path, { query: { ...query, limit: 500, offset } });
    items.push(...page.items);
    offset += page.items.length;
    if (!page.items.length || offset >= page.total || items.length >= max) return items;
  }
}

/** A one-line message for an error, for places without a form. */
export function errorText(err) {
  if (err instanceof ApiError) {
    const prefix = err.status === 403 ? `${t("error.forbidden")}: ` : "";
    return prefix + err.items.map((i) => (i.field ? `${i.field}: ${i.msg}` : i.msg)).join("; ");
  }
  return String(err);
}

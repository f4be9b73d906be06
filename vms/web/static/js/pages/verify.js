// The export signing key (public; the API serves it without a token) and its fingerprint.
import { api, errorText } from "../lib/api.js";
import { $ } from "../lib/dom.js";

export async function loadKey() {
  try {
    const response = await api("/api/v1/exports/public-key", { as: "response" });
    $("#public-key").textContent = await response.text();
    $("#key-fingerprint").textContent = response.headers.get("x-key-fingerprint-sha256") || "–";
  } catch (err) {
    $("#public-key").textContent = errorText(err);
  }
}

if (document.querySelector('script[src*="pages/verify.js"]')) loadKey();

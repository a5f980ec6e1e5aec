// Shared by every page: the API helper (CSRF header, JSON errors, retries), toasts, settings kept in this browser
// (localStorage), time zone, copy buttons.
"use strict";

const Terakoya = (() => {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // fetch JSON; network failures are retried (the idempotency key makes a resent answer harmless)
  async function api(method, url, body, { retries = 0 } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = csrf();
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(url, {
          method, headers, credentials: "same-origin",
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (err) {
        if (attempt >= retries) throw new ApiError(0, "network", "the server could not be reached; check your connection");
        await sleep(400 * 2 ** attempt);
        continue;
      }
      if (response.status >= 500 && attempt < retries) { await sleep(400 * 2 ** attempt); continue; }
      let data = null;
      try { data = await response.json(); } catch (err) { data = null; }
      if (!response.ok) {
        const e = (data && data.error) || { code: "http", message: `the server answered ${response.status}` };
        if (response.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname); }
        throw new ApiError(response.status, e.code, e.message);
      }
      return data;
    }
  }

  let toastTimer = null;
  function toast(message, { error = false, ms = 2600 } = {}) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.classList.toggle("error", error);
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, ms);
  }

  // random key for one answer; crypto.randomUUID needs HTTPS, getRandomValues does not
  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // values kept in this browser (localStorage, as JSON); a browser that refuses storage gets the fallback
  const store = {
    get(key, fallback) {
      try {
        const raw = window.localStorage.getItem(key);
        return raw === null ? fallback : JSON.parse(raw);
      } catch (err) { return fallback; }
    },
    set(key, value) {
      try { window.localStorage.setItem(key, JSON.stringify(value)); return true; } catch (err) { return false; }
    },
  };

  function duration(seconds) {
    const s = Math.round(seconds || 0), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
    if (m) return `${m} min ${String(r).padStart(2, "0")} s`;
    return `${r} s`;
  }

  function money(amount, currency) {
    return `${(amount || 0).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })} ${currency || ""}`.trim();
  }

  document.cookie = `terakoya_tz=${-new Date().getTimezoneOffset()}; path=/; SameSite=Lax; max-age=31536000`;

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copy);
    field.select();
    if (navigator.clipboard) navigator.clipboard.writeText(field.value).catch(() => document.execCommand("copy"));
    else document.execCommand("copy");
    button.textContent = "Copied";
  });

  return { api, ApiError, toast, newKey, duration, money, sleep, store, csrf };
})();

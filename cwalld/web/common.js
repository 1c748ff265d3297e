// What the wall and the console share: the API call (cookie session, CSRF header, language),
// element building, the language choice.

export const $ = (sel) => document.querySelector(sel);

export function chosenLanguage() {
  const saved = localStorage.getItem("lang");
  if (saved === "en" || saved === "tr") return saved;
  return (navigator.language || "tr").startsWith("en") ? "en" : "tr";
}

export function csrf() {
  const m = document.cookie.match(/(?:^|; )cwall_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export async function api(method, path, body, lang = "tr") {
  const headers = { "Accept-Language": lang };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  const r = await fetch("/api/v1" + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                           credentials: "same-origin" });
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  return { status: r.status, data, headers: r.headers };
}

// The signed-in user, or null. The csrf cookie comes and goes with the session cookie: without
// it there is nobody to ask about (and no 401 in the console).
export async function currentUser(lang) {
  if (!csrf()) return null;
  const r = await api("GET", "/me", undefined, lang);
  return r.status === 200 ? r.data.user : null;
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === false) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

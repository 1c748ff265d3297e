// The wall in a browser: plain DOM over the public API (/api/v1), live through /api/v1/events.
// No build step and no third-party code; the session is an HttpOnly cookie, writes echo the
// cwall_csrf cookie in X-CSRF-Token.

import { $, api as call, chosenLanguage, currentUser, el } from "/static/{{common.js}}";

const T = {
  tr: {
    title: "İtiraf Duvarı", skip: "İtiraflara geç", signout: "Çıkış", signin_title: "Giriş yap ya da kaydol",
    username: "Kullanıcı adı", password: "Parola", signin: "Giriş", signup: "Kaydol", compose_title: "İtiraf et",
    content: "İtirafın", category: "Kategori", anonymous: "Anonim paylaş",
    anonymous_help: "Açıkken kullanıcı adın hiçbir yerde görünmez; itirafını yalnızca sen kendinle ilişkilendirebilirsin.",
    send: "Gönder", wall: "İtiraflar", newest: "En yeni", popular: "Popüler", mine: "Benim itiraflarım", all: "Tümü",
    more: "Daha fazla", count: (n, min, max) => `${n} / ${max} karakter (en az ${min})`,
    relate: "Ben de", report: "Bildir", report_reason: "Neden (isteğe bağlı)", report_send: "Bildir",
    reported: "Bildirildi, teşekkürler.", waiting: "Yanıt bekleniyor…", reply: "Yanıt",
    posted: "İtirafın alındı; yanıtı gelince yayımlanacak.", signed_in: (u) => `${u} olarak giriş yapıldı`,
    daily: (when) => `Bugünlük itiraf hakkın doldu. ${when} yeniden yazabilirsin.`,
    status_pending: "yanıt bekliyor", status_published: "yayımlandı", status_rejected: "reddedildi",
    status_hidden: "gizlendi", empty: "Henüz itiraf yok.", error: "Bir şeyler ters gitti.",
    offline: "Canlı bağlantı koptu; yeniden bağlanılıyor…",
  },
  en: {
    title: "Confession Wall", skip: "Skip to confessions", signout: "Sign out", signin_title: "Sign in or sign up",
    username: "Username", password: "Password", signin: "Sign in", signup: "Sign up", compose_title: "Confess",
    content: "Your confession", category: "Category", anonymous: "Post anonymously",
    anonymous_help: "When on, your username is shown nowhere; only you can connect this confession to yourself.",
    send: "Send", wall: "Confessions", newest: "Newest", popular: "Popular", mine: "My confessions", all: "All",
    more: "More", count: (n, min, max) => `${n} / ${max} characters (at least ${min})`,
    relate: "I relate", report: "Report", report_reason: "Reason (optional)", report_send: "Report",
    reported: "Reported, thank you.", waiting: "Waiting for a reply…", reply: "Reply",
    posted: "Your confession is in; it is published with its reply.", signed_in: (u) => `Signed in as ${u}`,
    daily: (when) => `You have used today's confessions. You can write again ${when}.`,
    status_pending: "waiting for a reply", status_published: "published", status_rejected: "rejected",
    status_hidden: "hidden", empty: "No confessions yet.", error: "Something went wrong.",
    offline: "Live updates lost; reconnecting…",
  },
};

const state = { lang: "tr", user: null, tab: "feed", cursor: null, categories: {}, cards: new Map() };
const min = Number(document.body.dataset.min), max = Number(document.body.dataset.max);

function t(key, ...args) {
  const v = T[state.lang][key];
  return typeof v === "function" ? v(...args) : v;
}

const api = (method, path, body) => call(method, path, body, state.lang);

function say(text) { $("#status").textContent = text; }

function translate() {
  document.documentElement.lang = state.lang;
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  $("#lang").textContent = state.lang === "tr" ? "EN" : "TR";
  updateCount();
  for (const [id, card] of state.cards) fill(card.el, card.c);
}

function updateCount() {
  const n = [...$("#content").value.trim()].length;
  $("#count").textContent = t("count", n, min, max);
}

function fill(li, c) {
  li.replaceChildren();
  li.dataset.id = c.id;
  li.append(el("p", { class: "meta" }, `${state.categories[c.category] || c.category}` +
    (c.author ? ` · ${c.author.name || c.author.username}` : "") +
    (state.tab === "mine" || c.status !== "published" ? ` · ${t("status_" + c.status) || c.status}` : "")));
  li.append(el("p", { class: "content" }, c.content));
  if (c.status === "pending") {
    li.append(el("p", { class: "reply waiting" }, t("waiting")));
    return;
  }
  if (c.ai_response) li.append(el("blockquote", { class: "reply", "aria-label": t("reply") }, c.ai_response));
  if (c.status !== "published") return;
  const relate = el("button", { type: "button", class: "relate", "aria-pressed": String(!!c.empathized),
                                disabled: !state.user && "" },
                    `${t("relate")} `, el("span", { class: "n" }, String(c.empathy_count)));
  relate.addEventListener("click", () => toggleEmpathy(c));
  li.append(relate);
  if (state.user) {
    const reason = el("input", { id: `reason-${c.id}`, maxlength: "500" });
    const form = el("form", { class: "report" },
      el("label", { for: `reason-${c.id}` }, t("report_reason")), reason,
      el("button", { type: "submit" }, t("report_send")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const r = await api("POST", `/confessions/${c.id}/report`, reason.value ? { reason: reason.value } : {});
      say(r.status === 202 ? t("reported") : (r.data?.error?.message || t("error")));
    });
    li.append(el("details", {}, el("summary", {}, t("report")), form));
  }
}

function show(c, { top = false } = {}) {
  const known = state.cards.get(c.id);
  if (known) {
    // The POST's answer (pending) can arrive after the live "published": never go back.
    if (known.c.status === "published" && c.status === "pending") return;
    known.c = c; fill(known.el, c); return;
  }
  const li = el("li", { class: "card" });
  state.cards.set(c.id, { el: li, c });
  fill(li, c);
  if (top) $("#items").prepend(li); else $("#items").append(li);
}

async function toggleEmpathy(c) {
  const on = !c.empathized;
  const r = await api(on ? "PUT" : "DELETE", `/confessions/${c.id}/empathy`);
  if (r.status === 200) { c.empathized = on; c.empathy_count = r.data.empathy_count; fill(state.cards.get(c.id).el, c); }
  else say(r.data?.error?.message || t("error"));
}

async function load(reset = true) {
  if (!reset && !state.cursor) return;
  if (reset) { state.cards.clear(); $("#items").replaceChildren(); state.cursor = null; }
  state.loading = true;
  try { await page(); } finally { state.loading = false; }
}

async function page() {
  const cat = $("#filter").value;
  let path;
  if (state.tab === "popular") path = "/confessions/popular";
  else if (state.tab === "mine") path = "/me/confessions" + (state.cursor ? `?cursor=${state.cursor}` : "");
  else {
    const q = new URLSearchParams();
    if (cat) q.set("category", cat);
    if (state.cursor) q.set("cursor", state.cursor);
    path = "/confessions" + (q.size ? "?" + q : "");
  }
  const r = await api("GET", path);
  if (r.status !== 200) { say(r.data?.error?.message || t("error")); return; }
  for (const c of r.data.items) show(c);
  state.cursor = r.data.next_cursor || null;
  $("#more").hidden = !state.cursor;
}

async function whoami() {
  state.user = await currentUser(state.lang);
  $("#auth").hidden = !!state.user;
  $("#compose").hidden = !state.user;
  $("#signout").hidden = !state.user;
  document.querySelector('[data-tab="mine"]').hidden = !state.user;
  $("#whoami").textContent = state.user ? t("signed_in", state.user.username) : "";
}

function listen() {
  const events = new EventSource("/api/v1/events");
  events.addEventListener("published", (e) => {
    const c = JSON.parse(e.data);
    const mine = state.cards.get(c.id);
    if (mine) { show({ ...mine.c, ...c, author: mine.c.author, empathized: mine.c.empathized }); return; }
    const cat = $("#filter").value;
    if (state.tab === "feed" && (!cat || cat === c.category)) show(c, { top: true });
  });
  events.addEventListener("empathy", (e) => {
    const { id, empathy_count } = JSON.parse(e.data);
    const card = state.cards.get(id);
    if (card) { card.c.empathy_count = empathy_count; const n = card.el.querySelector(".n"); if (n) n.textContent = String(empathy_count); }
  });
  events.addEventListener("removed", (e) => {
    const { id } = JSON.parse(e.data);
    const card = state.cards.get(id);
    if (card && state.tab !== "mine") { card.el.remove(); state.cards.delete(id); }
  });
  events.addEventListener("reset", () => load());  // gone past the replay window: start over
  // The browser reconnects by itself, sending Last-Event-ID: what was missed comes first.
  events.addEventListener("error", () => { $("#offline").hidden = false; });
  events.addEventListener("open", () => { $("#offline").hidden = true; });
}

function when(seconds) {
  const at = new Date(Date.now() + seconds * 1000);
  return at.toLocaleString(state.lang === "tr" ? "tr-TR" : "en-GB", { weekday: "long", hour: "2-digit", minute: "2-digit" });
}

async function init() {
  state.lang = chosenLanguage();
  const cats = await api("GET", "/categories");
  for (const c of cats.data.categories) {
    state.categories[c.slug] = c.name;
    $("#category").append(el("option", { value: c.slug }, c.name));
    $("#filter").append(el("option", { value: c.slug }, c.name));
  }
  $("#content").setAttribute("maxlength", String(max));
  translate();
  $("#lang").addEventListener("click", () => { state.lang = state.lang === "tr" ? "en" : "tr"; localStorage.setItem("lang", state.lang); translate(); });
  $("#content").addEventListener("input", updateCount);
  $("#filter").addEventListener("change", () => load());
  $("#more").addEventListener("click", () => load(false));
  // More on scroll: the button loads the next page when it comes into view (and stays for keyboards).
  new IntersectionObserver((seen) => { if (seen.some((e) => e.isIntersecting) && !state.loading) load(false); })
    .observe($("#more"));
  for (const b of document.querySelectorAll("[data-tab]")) {
    b.addEventListener("click", () => {
      state.tab = b.dataset.tab;
      for (const o of document.querySelectorAll("[data-tab]")) o.setAttribute("aria-pressed", String(o === b));
      load();
    });
  }
  $("#auth-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const action = ev.submitter?.value || "login";
    const r = await api("POST", `/auth/${action}`, { username: $("#username").value, password: $("#password").value, session: "cookie" });
    if (r.status === 200 || r.status === 201) { $("#password").value = ""; await whoami(); say(t("signed_in", state.user.username)); await load(); }
    else say(r.data?.error?.message || t("error"));
  });
  $("#signout").addEventListener("click", async () => { await api("POST", "/auth/logout"); await whoami(); await load(); });
  $("#post-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { content: $("#content").value, category: $("#category").value, anonymous: $("#anonymous").checked };
    const send = $("#post-form button[type=submit]");
    send.disabled = true;  // one click, one confession
    const r = await api("POST", "/confessions", body).finally(() => { send.disabled = false; });
    if (r.status === 202) {
      $("#content").value = ""; updateCount(); say(t("posted"));
      show(r.data.confession, { top: true });
    } else if (r.status === 429 && r.data?.error?.code === "daily_limit") {
      say(t("daily", when(Number(r.headers.get("Retry-After") || 0))));
    } else say(r.data?.error?.message || t("error"));
  });
  await whoami();
  await load();
  listen();
}

init();

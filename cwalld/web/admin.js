// The operator's console: the admin API (/api/v1/admin/*) in a page, queue counts live through
// /api/v1/admin/events. It holds no power of its own: every button is one admin API call.

import { $, api as call, chosenLanguage, currentUser, el } from "/static/{{common.js}}";

const T = {
  tr: {
    title: "Operatör konsolu", skip: "Konsola geç", wall: "Duvar", signout: "Çıkış", signin_title: "Yönetici girişi",
    username: "Kullanıcı adı", password: "Parola", signin: "Giriş", denied: "Bu sayfa yalnızca yöneticiler içindir.",
    queue: "Kuyruk", retry: "Başarısız işleri yeniden dene", regen_since: "Yedek yanıtları yeniden üret",
    regen: "Yeniden üret", jobs: "Zamanlanmış işler", job: "İş", schedule: "Zamanlama", last_run: "Son çalışma",
    result: "Sonuç", next_run: "Sonraki", run: "Şimdi çalıştır", moderation: "Moderasyon", show: "Göster",
    st_reported: "Bildirilenler", st_pending: "Bekleyenler", st_rejected: "Reddedilenler", st_hidden: "Gizlenenler",
    more: "Daha fazla", cache: "Önbellek", scope: "Kapsam", clear: "Temizle", admins: "Yöneticiler",
    grant: "Yönetici yap", revoke: "Yöneticiliği al", signed_in: (u) => `${u} olarak giriş yapıldı`,
    waiting: "bekleyen", active: "işlenen", delayed: "ertelenen", completed: "tamamlanan", failed: "başarısız",
    fallback: "yedek yanıtlı", held: "tutulan",
    hide: "Gizle", restore: "Geri yükle", publish: "Yayımla", reject: "Reddet", reports: (n) => `${n} bildirim`,
    done: "Yapıldı.", retried: (n) => `${n} iş yeniden kuyrukta.`, cleared: (s) => `Önbellek temizlendi: ${s}.`,
    regen_state: (r) => `${r.done} / ${r.total}${r.running ? " sürüyor" : ""} · değişen ${r.outcomes.replaced}, ` +
      `gizlenen ${r.outcomes.hidden}, aynı kalan ${r.outcomes.kept}, başarısız ${r.outcomes.failed}`,
    empty: "Bu listede bir şey yok.", never: "hiç", error: "Bir şeyler ters gitti.",
  },
  en: {
    title: "Operator console", skip: "Skip to the console", wall: "Wall", signout: "Sign out", signin_title: "Admin sign-in",
    username: "Username", password: "Password", signin: "Sign in", denied: "This page is for admins only.",
    queue: "Queue", retry: "Retry failed jobs", regen_since: "Regenerate fallback replies", regen: "Regenerate",
    jobs: "Scheduled jobs", job: "Job", schedule: "Schedule", last_run: "Last run", result: "Result",
    next_run: "Next run", run: "Run now", moderation: "Moderation", show: "Show", st_reported: "Reported",
    st_pending: "Pending", st_rejected: "Rejected", st_hidden: "Hidden", more: "More", cache: "Cache",
    scope: "Scope", clear: "Clear", admins: "Admins", grant: "Make admin", revoke: "Revoke admin",
    signed_in: (u) => `Signed in as ${u}`, waiting: "waiting", active: "active", delayed: "delayed",
    completed: "completed", failed: "failed", fallback: "fallback", held: "held",
    hide: "Hide", restore: "Restore", publish: "Publish", reject: "Reject", reports: (n) => `${n} reports`,
    done: "Done.", retried: (n) => `${n} jobs queued again.`, cleared: (s) => `Cache cleared: ${s}.`,
    regen_state: (r) => `${r.done} / ${r.total}${r.running ? " running" : ""} · replaced ${r.outcomes.replaced}, ` +
      `hidden ${r.outcomes.hidden}, kept ${r.outcomes.kept}, failed ${r.outcomes.failed}`,
    empty: "Nothing in this list.", never: "never", error: "Something went wrong.",
  },
};
const COUNTS = ["waiting", "active", "delayed", "completed", "failed", "fallback", "held"];
const ACTIONS = { reported: ["hide"], pending: ["publish", "reject"], rejected: ["restore"], hidden: ["restore"] };

const state = { lang: "tr", user: null, counts: null, cursor: null, regen: null, categories: {} };
const t = (key, ...args) => { const v = T[state.lang][key]; return typeof v === "function" ? v(...args) : v; };
const api = (method, path, body) => call(method, path, body, state.lang);
const say = (text) => { $("#status").textContent = text; };
const failed = (r) => say(r.data?.error?.message || t("error"));
const time = (ts) => ts ? new Date(ts).toLocaleString(state.lang === "tr" ? "tr-TR" : "en-GB") : t("never");

function translate() {
  document.documentElement.lang = state.lang;
  document.title = t("title");
  for (const e of document.querySelectorAll("[data-t]")) e.textContent = t(e.dataset.t);
  $("#lang").textContent = state.lang === "tr" ? "EN" : "TR";
  $("#whoami").textContent = state.user ? t("signed_in", state.user.username) : "";
  showCounts();
  showRegen();
}

function showCounts() {
  if (!state.counts) return;
  $("#counts").replaceChildren(...COUNTS.map((k) => el("div", {},
    el("dt", {}, t(k)), el("dd", { "data-count": k }, String(state.counts[k] ?? 0)))));
}

function showRegen() {
  $("#regen-progress").textContent = state.regen ? t("regen_state", state.regen) : "";
}

async function loadJobs() {
  const r = await api("GET", "/admin/jobs");
  if (r.status !== 200) return failed(r);
  $("#jobs tbody").replaceChildren(...r.data.jobs.map((j) => {
    const run = el("button", { type: "button", "aria-label": `${t("run")}: ${j.name}` }, t("run"));
    run.addEventListener("click", async () => {
      const done = await api("POST", `/admin/jobs/${j.name}/run`);
      if (done.status !== 200) return failed(done);
      say(`${j.name}: ${JSON.stringify(done.data.result)}`);
      await loadJobs();
    });
    const last = j.last_run;
    return el("tr", {}, el("th", { scope: "row" }, j.name), el("td", {}, el("code", {}, j.schedule)),
      el("td", {}, time(last?.started_at)),
      el("td", {}, last ? (last.error || JSON.stringify(last.result)) : ""), el("td", {}, time(j.next_run)), el("td", {}, run));
  }));
}

async function loadModeration(reset = true) {
  const status = $("#mod-status").value;
  if (reset) { $("#mod-items").replaceChildren(); state.cursor = null; }
  const q = new URLSearchParams({ status });
  if (state.cursor) q.set("cursor", state.cursor);
  const r = await api("GET", "/admin/confessions?" + q);
  if (r.status !== 200) return failed(r);
  for (const c of r.data.items) {
    const li = el("li", { class: "card", "data-id": String(c.id) },
      el("p", { class: "meta" }, `#${c.id} · ${state.categories[c.category] || c.category} · ${time(c.created_at)}` +
        (c.report_count ? ` · ${t("reports", c.report_count)}` : "") + (c.rejection_reason ? ` · ${c.rejection_reason}` : "")),
      el("p", { class: "content" }, c.content));
    if (c.ai_response) li.append(el("blockquote", { class: "reply" }, c.ai_response));
    const row = el("div", { class: "row" });
    for (const action of ACTIONS[status]) {
      const b = el("button", { type: "button", "data-action": action }, t(action));
      b.addEventListener("click", async () => {
        const done = await api("POST", `/admin/confessions/${c.id}/${action}`);
        if (done.status !== 200) return failed(done);
        li.remove();
        say(t("done"));
      });
      row.append(b);
    }
    li.append(row);
    $("#mod-items").append(li);
  }
  if (reset && !r.data.items.length) $("#mod-items").append(el("li", { class: "hint" }, t("empty")));
  state.cursor = r.data.next_cursor || null;
  $("#mod-more").hidden = !state.cursor;
}

async function watchRegen() {
  const r = await api("GET", "/admin/ai/regenerate");
  if (r.status !== 200) return;
  state.regen = r.data.regeneration;
  showRegen();
  if (state.regen?.running) setTimeout(watchRegen, 1000);
}

function listen() {
  const events = new EventSource("/api/v1/admin/events");
  events.addEventListener("queue", (e) => { state.counts = JSON.parse(e.data); showCounts(); });
}

async function start() {
  state.user = await currentUser(state.lang);
  $("#signout").hidden = !state.user;
  $("#auth").hidden = !!state.user;
  $("#denied").hidden = !state.user || state.user.is_admin;
  $("#console").hidden = !state.user?.is_admin;
  translate();
  if (!state.user?.is_admin) return;
  listen();
  const cats = await api("GET", "/categories");
  for (const c of cats.data?.categories || []) state.categories[c.slug] = c.name;
  await Promise.all([loadJobs(), loadModeration(), watchRegen()]);
}

function init() {
  state.lang = chosenLanguage();
  $("#lang").addEventListener("click", () => {
    state.lang = state.lang === "tr" ? "en" : "tr";
    localStorage.setItem("lang", state.lang);
    translate();
  });
  $("#auth-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/auth/login", { username: $("#username").value, password: $("#password").value, session: "cookie" });
    if (r.status !== 200) return failed(r);
    $("#password").value = "";
    say("");
    await start();
  });
  $("#signout").addEventListener("click", async () => { await api("POST", "/auth/logout"); location.reload(); });
  $("#retry").addEventListener("click", async () => {
    const r = await api("POST", "/admin/queue/retry-failed");
    if (r.status === 200) say(t("retried", r.data.retried)); else failed(r);
  });
  $("#regen").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/admin/ai/regenerate", { since: $("#since").value });
    if (r.status !== 202) return failed(r);
    state.regen = r.data.regeneration;
    showRegen();
    if (state.regen.running) setTimeout(watchRegen, 1000);
  });
  $("#mod-status").addEventListener("change", () => loadModeration());
  $("#mod-more").addEventListener("click", () => loadModeration(false));
  $("#cache-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await api("POST", "/admin/cache/clear", { scope: $("#scope").value });
    if (r.status === 200) say(t("cleared", r.data.cleared)); else failed(r);
  });
  $("#admin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const grant = (ev.submitter?.value || "grant") === "grant";
    const r = await api(grant ? "POST" : "DELETE", `/admin/users/${encodeURIComponent($("#admin-user").value)}/admin`);
    if (r.status === 200) say(`${r.data.user.username}: ${r.data.user.is_admin ? "admin" : "—"}`); else failed(r);
  });
  start();
}

init();

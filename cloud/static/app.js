// The app shell: sign-in state, site choice, hash routes, and the live change stream.
//
// Views are modules exporting `render(root, ctx, arg)`; they may return
// { onChange(message), dispose() }. `onChange` receives every work-order change of the
// caller's sites from GET /api/v1/stream (server-sent events), so no view ever reloads.

import { api, signOut, token, upload, withToken } from "./api.js";
import { clear, h, toast } from "./dom.js";

const VIEWS = {
  login: () => import("./views/login.js"),
  board: () => import("./views/board.js"),
  estate: () => import("./views/estate.js"),
  device: () => import("./views/device.js"),
  alarms: () => import("./views/alarms.js"),
  energy: () => import("./views/energy.js"),
  report: () => import("./views/report.js"),
  reports: () => import("./views/reports.js"),
};
const TOPICS = [
  "work_order.created", "work_order.state", "work_order.acknowledged", "work_order.event",
  "work_order.cleared", "work_order.escalated", "work_order.rated", "work_order.reopened",
];
const SITE_KEY = "gatehouse.site";

const ctx = {
  me: null,
  sites: [],
  site: null,
  api,
  upload,
  withToken,
  go: (hash) => { location.hash = hash; },
  rerender: () => route(),
};
let current = null;
let stream = null;
let generation = 0;

async function loadSession() {
  ctx.me = await api("/api/v1/auth/me");
  ctx.sites = await api("/api/v1/sites");
  const saved = localStorage.getItem(SITE_KEY);
  const ids = ctx.sites.map((x) => x.id);
  ctx.site = ids.includes(saved) ? saved : (ids[0] || null);
  const pick = clear(document.getElementById("site"));
  for (const site of ctx.sites) {
    pick.append(h("option", { value: site.id, selected: site.id === ctx.site }, site.name || site.id));
  }
  pick.disabled = ctx.sites.length < 2;
  document.getElementById("user").textContent = `${ctx.me.username} · ${ctx.me.role}`;
  document.body.dataset.role = ctx.me.role;
  openStream();
}

function openStream() {
  if (stream) stream.close();
  const live = document.getElementById("live");
  stream = new EventSource(withToken("/api/v1/stream"));
  stream.onopen = () => { live.classList.add("on"); live.title = "live"; };
  stream.onerror = () => { live.classList.remove("on"); live.title = "reconnecting"; };
  const deliver = (ev) => {
    let message;
    try { message = JSON.parse(ev.data); } catch { return; }
    if (current && current.onChange) current.onChange(message);
  };
  stream.onmessage = deliver;
  for (const topic of TOPICS) stream.addEventListener(topic, deliver);
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = raw.split("/");
  return { name: name || "board", arg: rest.map(decodeURIComponent).join("/") };
}

async function route() {
  const mine = ++generation;
  const { name, arg } = parseHash();
  const top = document.getElementById("top");
  const root = document.getElementById("view");
  if (current && current.dispose) current.dispose();
  current = null;
  if (!token() && name !== "login") { location.hash = "#/login"; return; }
  if (name === "login") {
    if (stream) { stream.close(); stream = null; }
    ctx.me = null;
    top.hidden = true;
  } else {
    if (!ctx.me) {
      try { await loadSession(); } catch (err) { toast(err.message, "error"); return; }
    }
    top.hidden = false;
  }
  for (const a of document.querySelectorAll(".nav a")) {
    a.classList.toggle("active", a.dataset.view === name);
  }
  const loader = VIEWS[name] || VIEWS.board;
  const mod = await loader();
  if (mine !== generation) return;
  clear(root);
  root.dataset.view = name;
  try {
    current = (await mod.render(root, ctx, arg)) || null;
  } catch (err) {
    if (err.status !== 401) {
      root.append(h("p", { class: "error" }, err.message));
    }
  }
}

document.getElementById("site").addEventListener("change", (ev) => {
  ctx.site = ev.target.value;
  localStorage.setItem(SITE_KEY, ctx.site);
  route();
});
document.getElementById("logout").addEventListener("click", () => {
  signOut();
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();

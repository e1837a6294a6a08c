// Small helpers: build DOM without innerHTML (no markup injection), format times.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function when(ts) {
  if (ts === null || ts === undefined) return "—";
  const d = new Date(ts * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

// "1h 05m", "4m 09s", "12s"; negative durations read as "-4m 09s".
export function span(seconds) {
  const neg = seconds < 0;
  let rest = Math.floor(Math.abs(seconds));
  const d = Math.floor(rest / 86400); rest -= d * 86400;
  const hr = Math.floor(rest / 3600); rest -= hr * 3600;
  const m = Math.floor(rest / 60); const sec = rest - m * 60;
  const pad = (n) => String(n).padStart(2, "0");
  let out;
  if (d) out = `${d}d ${pad(hr)}h`;
  else if (hr) out = `${hr}h ${pad(m)}m`;
  else if (m) out = `${m}m ${pad(sec)}s`;
  else out = `${sec}s`;
  return neg ? `-${out}` : out;
}

export function toast(message, kind = "info") {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = `toast ${kind}`;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

export function prettyType(type) {
  return (type || "").replace(/^[a-z]+\./, "").replaceAll("_", " ");
}

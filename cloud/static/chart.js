// A small inline-SVG line chart: time on x, one or more series on y, optional limit lines
// and highlighted x-ranges. No library: the dashboard has no build chain.

import { s } from "./dom.js";

const H = 180;
const PAD = { l: 44, r: 10, t: 10, b: 22 };

function niceTicks(lo, hi, n = 4) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => x >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
  return out;
}

function fmt(v, step) {
  if (Math.abs(v) >= 10000) return `${(v / 1000).toFixed(0)}k`;
  const digits = Math.min(4, Math.max(0, -Math.floor(Math.log10(step || 1))));
  return v.toFixed(digits);
}

function clock(ts, spanSec) {
  const d = new Date(ts * 1000);
  if (spanSec > 3 * 86400) return d.toLocaleDateString([], { month: "short", day: "numeric" });
  const time = spanSec < 600
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (spanSec > 20 * 3600) return `${d.toLocaleDateString([], { weekday: "short" })} ${time}`;
  return time;
}

// Width available for a chart inside `el` (its content box).
export function widthOf(el) {
  const style = getComputedStyle(el);
  return el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
}

// Call `fn` after the window stops resizing; returns the function that stops listening.
export function onResize(fn) {
  let timer = null;
  let last = window.innerWidth;
  const handler = () => {
    clearTimeout(timer);
    timer = setTimeout(() => { if (window.innerWidth !== last) { last = window.innerWidth; fn(); } }, 150);
  };
  window.addEventListener("resize", handler);
  return () => { clearTimeout(timer); window.removeEventListener("resize", handler); };
}

// series: [{ name, cls, points: [[ts, value|null], ...], dashed }]
// lines: [{ value, cls, label }]; bands: [{ from, to, cls }]
// `width` is the drawing's width in CSS pixels (the container's): text stays legible at
// every screen size because the SVG is never stretched, only redrawn.
// `zero` keeps 0 on the y axis (quantities such as energy, where the baseline is zero).
export function lineChart({ series, lines = [], bands = [], x0, x1, label = "", width = 640, zero = false }) {
  const W = Math.max(240, Math.round(width));
  const all = series.flatMap((x) => x.points.map((p) => p[1])).filter((v) => v !== null && Number.isFinite(v));
  for (const l of lines) all.push(l.value);
  let lo = all.length ? Math.min(...all) : 0;
  let hi = all.length ? Math.max(...all) : 1;
  if (lo > 0 && (zero || lo < hi * 0.5)) lo = 0;
  const padY = (hi - lo) * 0.08 || 1;
  lo -= lo === 0 ? 0 : padY; hi += padY;
  const xs = series.flatMap((x) => x.points.map((p) => p[0]));
  const a = x0 ?? (xs.length ? Math.min(...xs) : 0);
  const b = x1 ?? (xs.length ? Math.max(...xs) : 1);
  const X = (t) => PAD.l + ((t - a) / ((b - a) || 1)) * (W - PAD.l - PAD.r);
  const Y = (v) => H - PAD.b - ((v - lo) / ((hi - lo) || 1)) * (H - PAD.t - PAD.b);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart", role: "img",
    "aria-label": label });
  for (const band of bands) {
    svg.append(s("rect", { x: X(band.from), y: PAD.t, width: Math.max(2, X(band.to) - X(band.from)),
      height: H - PAD.t - PAD.b, class: band.cls || "band" }));
  }
  const ticks = niceTicks(lo, hi);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  for (const v of ticks) {
    svg.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: Y(v), y2: Y(v), class: "grid" }));
    svg.append(s("text", { x: PAD.l - 4, y: Y(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v, step)));
  }
  const n = W < 420 ? 2 : 4;
  for (let i = 0; i <= n; i += 1) {
    const t = a + ((b - a) * i) / n;
    svg.append(s("text", { x: X(t), y: H - 6, class: "tick",
      "text-anchor": i === 0 ? "start" : i === n ? "end" : "middle" }, clock(t, b - a)));
  }
  for (const l of lines) {
    svg.append(s("line", { x1: PAD.l, x2: W - PAD.r, y1: Y(l.value), y2: Y(l.value), class: `limit ${l.cls || ""}` }));
    svg.append(s("text", { x: W - PAD.r - 2, y: Y(l.value) - 3, class: "tick limit-label", "text-anchor": "end" }, l.label));
  }
  for (const ser of series) {
    let d = "";
    let pen = false;
    for (const [t, v] of ser.points) {
      if (v === null || !Number.isFinite(v)) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${X(t).toFixed(1)},${Y(v).toFixed(1)}`;
      pen = true;
    }
    svg.append(s("path", { d, class: `series ${ser.cls || ""}`, fill: "none" }));
    if (ser.points.filter((p) => p[1] !== null).length === 1) {
      const [t, v] = ser.points.find((p) => p[1] !== null);
      svg.append(s("circle", { cx: X(t), cy: Y(v), r: 3, class: `dot ${ser.cls || ""}` }));
    }
  }
  return svg;
}

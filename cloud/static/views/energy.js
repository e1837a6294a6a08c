// Energy: kWh per building per hour against its baseline, spike hours shaded.

import { h, clear } from "../dom.js";
import { lineChart, onResize, widthOf } from "../chart.js";

const RANGES = [["24h", 24], ["3d", 72], ["7d", 168]];

export async function render(root, ctx) {
  let hours = 24;
  const head = h("div", { class: "view-head" }, h("h1", {}, "Energy"));
  const body = h("div", { class: "charts", id: "energy" });
  root.append(head, body);

  async function load() {
    const e = await ctx.api("/api/v1/energy", { params: { site_id: ctx.site, hours } });
    const total = e.buildings.reduce((acc, b) => acc + b.kwh_total, 0);
    clear(head).append(h("h1", {}, "Energy"),
      h("div", { class: "summary" },
        h("span", { class: "pill" }, `${total.toFixed(1)} kWh`),
        h("span", { class: `pill ${e.spike_events.length ? "bad" : "good"}` }, `${e.spike_events.length} spike alarms`),
        h("div", { class: "ranges" }, RANGES.map(([label, n]) =>
          h("button", { type: "button", class: n === hours ? "on" : "", onclick: () => { hours = n; load(); } }, label)))));
    clear(body);
    if (!e.buildings.length) {
      body.append(h("p", { class: "muted", id: "no-energy" }, "No meter readings yet."));
      return;
    }
    for (const b of e.buildings) {
      const delta = b.baseline_total ? ((b.kwh_total - b.baseline_total) / b.baseline_total) * 100 : null;
      const spikes = b.hours.filter((x) => x.spike);
      const marks = e.spike_events.filter((s) => s.building === b.building);
      const fig = h("figure", { class: "card chart-card", dataset: { building: b.building } },
        h("figcaption", {}, h("b", {}, b.building), ` · ${b.meters} meter${b.meters === 1 ? "" : "s"} · ${b.kwh_total.toFixed(1)} kWh`,
          delta !== null ? h("span", { class: `latest ${delta > 10 ? "bad" : ""}` }, `${delta >= 0 ? "+" : ""}${delta.toFixed(0)}% vs baseline`) : null));
      body.append(fig);
      fig.append(
        lineChart({
          label: `energy ${b.building}`, x0: Math.max(e.since, firstHour(b) - 1800),
          x1: e.since + hours * 3600, width: widthOf(fig), zero: true,
          bands: [...spikes.map((x) => ({ from: x.ts, to: x.ts + 3600, cls: "band spike" })),
            ...marks.map((s) => ({ from: s.ts, to: s.ts + 120, cls: "band mark" }))],
          series: [
            { name: "kWh", cls: "mean", points: b.hours.map((x) => [x.ts + 1800, x.kwh]) },
            { name: "baseline", cls: "baseline", points: b.hours.map((x) => [x.ts + 1800, x.baseline_kwh]) },
          ],
        }),
        h("p", { class: "legend" }, h("span", { class: "key mean" }, "kWh per hour"),
          h("span", { class: "key baseline" }, "baseline (same hour, earlier weeks)"),
          h("span", { class: "key spike" }, "spike")));
    }
  }

  await load();
  const timer = setInterval(() => load().catch(() => {}), 60_000);
  const stopResize = onResize(() => load().catch(() => {}));
  return {
    onChange(message) {
      const o = message.work_order;
      if (o && o.event_type === "meter.energy_spike") load().catch(() => {});
    },
    dispose() { clearInterval(timer); stopResize(); },
  };
}

// A young site (the demo) has only its last hours: the chart starts at its first data.
function firstHour(building) {
  const first = building.hours.find((x) => x.kwh !== null);
  return first ? first.ts : -Infinity;
}

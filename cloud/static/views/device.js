// One device: its record, readings over time (minute summaries), events, work orders and
// maintenance visits. Orders and events refresh live; readings every minute.

import { h, clear, when, prettyType } from "../dom.js";
import { lineChart, onResize, widthOf } from "../chart.js";

const RANGES = [["6h", 6 * 3600], ["24h", 86400], ["7d", 7 * 86400]];

export async function render(root, ctx, deviceId) {
  if (!deviceId) { ctx.go("#/estate"); return null; }
  let range = 86400;
  const head = h("div", { class: "view-head" });
  const record = h("section", { class: "card record", id: "device-record" });
  const charts = h("section", { class: "charts", id: "device-charts" });
  const history = h("div", { class: "history" });
  root.append(head, record, charts, history);

  async function loadDetail() {
    const d = await ctx.api(`/api/v1/devices/${encodeURIComponent(deviceId)}`, { params: { site_id: ctx.site } });
    const dev = d.device;
    clear(head).append(
      h("h1", {}, dev.device_id),
      h("div", { class: "summary" },
        h("span", { class: "pill" }, dev.kind.replace("_", " ")),
        h("span", { class: "pill" }, `${dev.building || "?"}${dev.floor !== null ? ` · floor ${dev.floor}` : ""}`),
        ...d.work_orders.filter((o) => !["closed", "cancelled"].includes(o.state)).map((o) =>
          h("span", { class: "pill bad" }, `#${o.id} ${o.state.replace("_", " ")}`))),
    );
    const rows = [
      ["Vendor", dev.vendor], ["Model", dev.model], ["Serial", dev.serial], ["Unit", dev.unit],
      ["Installed", dev.install_date], ["Warranty until", dev.warranty_end],
    ].filter(([, v]) => v);
    clear(record).append(h("h2", {}, "Record"),
      rows.length ? h("dl", { class: "facts" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))
        : h("p", { class: "muted" }, "No ledger details recorded."));

    clear(history).append(
      table("Work orders", "device-orders", ["#", "Title", "Priority", "State", "Opened", "Closed", "Rating"],
        d.work_orders.map((o) => [`#${o.id}`, o.title, o.priority, o.state.replace("_", " "), when(o.opened_at),
          when(o.closed_at), o.rating ? "★".repeat(o.rating) : ""])),
      table("Events", "device-events", ["When", "Type", "Severity", "State", "Order"],
        d.events.map((e) => [when(e.ts), prettyType(e.type), e.severity, e.state,
          e.work_order_id ? `#${e.work_order_id}` : ""])),
      table("Maintenance", "device-visits", ["When", "Technician", "Notes", "Parts"],
        d.visits.map((v) => [when(v.ts), v.technician || "", v.notes, (v.parts || []).join(", ")])),
    );
    return d;
  }

  async function loadReadings() {
    const now = Date.now() / 1000;
    const r = await ctx.api(`/api/v1/devices/${encodeURIComponent(deviceId)}/readings`, {
      params: { site_id: ctx.site, since: Math.floor(now - range) },
    });
    const picker = h("div", { class: "ranges" }, RANGES.map(([label, sec]) =>
      h("button", { type: "button", class: sec === range ? "on" : "", onclick: () => { range = sec; loadReadings(); } }, label)));
    clear(charts).append(h("div", { class: "charts-head" }, h("h2", {}, "Readings"), picker));
    const names = Object.keys(r.fields).filter((f) => r.points.some((p) => f in p.mean));
    if (!names.length) {
      charts.append(h("p", { class: "muted", id: "no-readings" }, "No readings in this range yet."));
      return;
    }
    for (const f of names) {
      const spec = r.fields[f];
      const lines = [];
      if (spec.warn_high !== null) lines.push({ value: spec.warn_high, cls: "warn", label: `warn ${spec.warn_high}` });
      if (spec.warn_low !== null) lines.push({ value: spec.warn_low, cls: "warn", label: `warn ${spec.warn_low}` });
      if (spec.limit !== null) lines.push({ value: spec.limit, cls: "crit", label: `limit ${spec.limit}` });
      const last = [...r.points].reverse().find((p) => f in p.mean);
      const fig = h("figure", { class: "card chart-card", dataset: { field: f } },
        h("figcaption", {}, h("b", {}, f.replaceAll("_", " ")), ` (${spec.unit})`,
          last ? h("span", { class: "latest" }, `${last.mean[f].toFixed(2)} ${spec.unit}`) : null));
      charts.append(fig);
      const first = r.points.find((p) => f in p.mean);
      fig.append(
        lineChart({
          label: f, x0: Math.max(r.since, first.ts - 60), x1: r.until, lines, width: widthOf(fig),
          series: [
            { name: "max", cls: "max", points: r.points.map((p) => [p.ts, f in p.max ? p.max[f] : null]) },
            { name: "mean", cls: "mean", points: r.points.map((p) => [p.ts, f in p.mean ? p.mean[f] : null]) },
          ],
        }));
    }
  }

  await loadDetail();
  await loadReadings();
  const timer = setInterval(() => loadReadings().catch(() => {}), 60_000);
  const stopResize = onResize(() => loadReadings().catch(() => {}));
  return {
    onChange(message) {
      const o = message.work_order;
      if (o && o.device_id === deviceId && o.site_id === ctx.site) loadDetail().catch(() => {});
    },
    dispose() { clearInterval(timer); stopResize(); },
  };
}

function table(title, id, columns, rows) {
  return h("section", { class: "card", id },
    h("h2", {}, title, h("span", { class: "count" }, String(rows.length))),
    rows.length
      ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))))
      : h("p", { class: "muted" }, "None."));
}

// Security alarms: thrown objects with floor, position on the facade and the evidence image;
// gate alarms below. A new alarm (its order arrives over SSE) is shown at once.

import { h, clear, when, prettyType } from "../dom.js";

const GATE_TYPES = ["gate.forced_open", "gate.tailgating", "gate.brute_force", "gate.tamper"];

export async function render(root, ctx) {
  const thrown = h("div", { class: "alarms", id: "thrown" });
  const gates = h("div", { id: "gate-alarms" });
  root.append(
    h("div", { class: "view-head" }, h("h1", {}, "Alarms")),
    h("h2", {}, "Thrown objects"), thrown,
    h("h2", {}, "Access gates"), gates,
  );
  let timer = null;

  async function load() {
    const [objects, gateAlarms] = await Promise.all([
      ctx.api("/api/v1/alarms", { params: { site_id: ctx.site, types: ["camera.object_thrown"], limit: 30 } }),
      ctx.api("/api/v1/alarms", { params: { site_id: ctx.site, types: GATE_TYPES, limit: 30 } }),
    ]);
    clear(thrown);
    if (!objects.length) thrown.append(h("p", { class: "muted" }, "No thrown-object alarms."));
    for (const a of objects) {
      const pos = Object.entries(a.position).map(([k, v]) => `${k.replace("_", " ")} ${v}`).join(" · ");
      thrown.append(h("article", { class: `card alarm${a.work_order_state && !["closed", "cancelled"].includes(a.work_order_state) ? " active" : ""}`, dataset: { event: a.event_id } },
        a.snapshot_url
          ? h("img", { class: "evidence", src: ctx.withToken(a.snapshot_url), alt: `evidence ${a.device_id} ${when(a.ts)}`, loading: "lazy" })
          : h("div", { class: "evidence none" }, a.snapshot ? "image not uploaded yet" : "no image"),
        h("div", { class: "alarm-text" },
          h("h3", {}, a.floor !== null ? `Floor ${a.floor}` : "Floor unknown", a.building ? ` · ${a.building}` : ""),
          h("p", { class: "meta" }, pos || "position unknown"),
          h("p", { class: "meta" }, `${a.device_id} · ${when(a.ts)}`),
          a.work_order_id ? h("p", { class: "meta" }, "order ",
            h("a", { href: "#/board" }, `#${a.work_order_id}`), ` · ${(a.work_order_state || "").replace("_", " ")}`) : null)));
    }
    clear(gates).append(gateAlarms.length
      ? h("div", { class: "scroll card" }, h("table", {},
        h("thead", {}, h("tr", {}, ["When", "Gate", "Alarm", "Order"].map((c) => h("th", {}, c)))),
        h("tbody", {}, gateAlarms.map((a) => h("tr", {},
          h("td", {}, when(a.ts)), h("td", {}, h("a", { href: `#/device/${encodeURIComponent(a.device_id)}` }, a.device_id)),
          h("td", {}, prettyType(a.type)), h("td", {}, a.work_order_id ? `#${a.work_order_id} ${a.work_order_state || ""}` : ""))))))
      : h("p", { class: "muted" }, "No gate alarms."));
  }

  await load();
  return {
    onChange(message) {
      const o = message.work_order;
      if (o && o.site_id === ctx.site && /^(camera|gate)\./.test(o.event_type || "")) {
        clearTimeout(timer);
        timer = setTimeout(() => load().catch(() => {}), 300);
      }
    },
    dispose() { clearTimeout(timer); },
  };
}

// The estate: buildings, their floors top to bottom, each device with its state.
// Refreshed (debounced) whenever a work order of the site changes.

import { h, clear, when } from "../dom.js";

const KIND_LABEL = {
  elevator: "lift", water_pump: "pump", smart_meter: "meter", access_gate: "gate", camera: "cam",
};
const STATES = ["alarm", "offline", "fault", "no_data", "ok"];

function floorName(f) {
  if (f === null || f === undefined) return "all";
  if (f < 0) return `${f}`;
  if (f === 0) return "G";
  return `F${f}`;
}

export async function render(root, ctx) {
  const head = h("div", { class: "view-head" }, h("h1", {}, "Estate"));
  const body = h("div", { class: "estate", id: "estate" });
  root.append(head, body);
  let timer = null;

  async function load() {
    const estate = await ctx.api("/api/v1/estate", { params: { site_id: ctx.site } });
    clear(head).append(h("h1", {}, estate.name || estate.site_id),
      h("div", { class: "summary" }, STATES.filter((s) => estate.counts[s]).map((s) =>
        h("span", { class: `pill dev-${s}` }, `${estate.counts[s]} ${s.replace("_", " ")}`))));
    clear(body);
    for (const b of estate.buildings) {
      const rows = b.floors.map((f) => h("div", { class: "floor" },
        h("span", { class: "floor-name" }, floorName(f.floor)),
        h("div", { class: "chips" }, f.devices.map((d) => h("a", {
          class: `chip dev-${d.state}`, href: `#/device/${encodeURIComponent(d.device_id)}`,
          title: `${d.device_id} · ${d.state.replace("_", " ")}${d.worst_priority ? ` · ${d.worst_priority}` : ""}`
            + ` · last data ${when(d.last_seen)}`,
          dataset: { device: d.device_id, state: d.state },
        }, h("span", { class: "kind" }, KIND_LABEL[d.kind] || d.kind),
        h("span", { class: "id" }, d.device_id),
        d.open_orders ? h("span", { class: "n" }, String(d.open_orders)) : null)))));
      body.append(h("section", { class: "building card" }, h("h2", {}, b.building), rows));
    }
    if (!estate.buildings.length) body.append(h("p", { class: "muted" }, "No devices registered for this site."));
  }

  await load();
  return {
    onChange() {
      clearTimeout(timer);
      timer = setTimeout(() => load().catch(() => {}), 400);
    },
    dispose() { clearTimeout(timer); },
  };
}

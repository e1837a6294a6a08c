// "My reports": the reports the signed-in user filed (GET /api/v1/work-orders?reporter=me),
// each with its order's state and photos; a closed one not yet rated offers 1 to 5 stars
// (POST /api/v1/work-orders/{id}/rating). Live: order changes arrive over the stream.

import { photoUrl } from "../api.js";
import { h, clear, when, toast } from "../dom.js";
import { canRate } from "../roles.js";

const STATE_TEXT = {
  open: "received", assigned: "assigned to a technician", in_progress: "being worked on",
  on_hold: "on hold", resolved: "fixed, awaiting check", closed: "closed", cancelled: "cancelled",
};

export async function render(root, ctx) {
  const orders = new Map();
  const list = h("div", { class: "reports", id: "my-reports" });
  root.append(
    h("div", { class: "view-head" }, h("h1", {}, "My reports"),
      h("a", { href: "#/report", class: "pill" }, "+ Report a problem")),
    list,
  );
  const mine = await ctx.api("/api/v1/work-orders", {
    params: { site_id: ctx.site, reporter: "me", limit: 200 },
  });
  for (const o of mine) orders.set(o.id, o);

  function draw() {
    clear(list);
    const sorted = [...orders.values()].sort((a, b) => b.opened_at - a.opened_at);
    if (!sorted.length) list.append(h("p", { class: "muted empty" }, "You have not reported anything yet."));
    for (const o of sorted) list.append(card(o));
  }

  function card(o) {
    return h("article", { class: `order report state-${o.state}`, id: `report-${o.id}`, dataset: { id: o.id, state: o.state } },
      h("header", {},
        h("span", { class: "oid" }, `#${o.id}`),
        h("span", { class: `badge state ${o.state}` }, STATE_TEXT[o.state] || o.state)),
      h("h3", {}, o.title),
      h("p", { class: "meta" }, o.location || o.device_id || "", ` · sent ${when(o.opened_at)}`),
      o.description ? h("p", {}, o.description) : null,
      o.photos.length ? h("div", { class: "photo-previews" }, o.photos.map(photoUrl).filter(Boolean).map((url) =>
        h("a", { href: url, target: "_blank", rel: "noopener" },
          h("img", { src: url, alt: "photo", class: "thumb" })))) : null,
      o.rating !== null
        ? h("p", { class: "rated" }, `Your rating: ${"★".repeat(o.rating)}${"☆".repeat(5 - o.rating)}`)
        : null,
      canRate(o, ctx.me) ? stars(o) : null,
    );
  }

  function stars(o) {
    return h("div", { class: "stars", role: "group", "aria-label": "rate this repair" },
      h("span", { class: "muted" }, "How did we do? "),
      [1, 2, 3, 4, 5].map((n) => h("button", {
        type: "button", class: "star", dataset: { rating: n }, title: `${n} of 5`,
        onclick: async () => {
          try {
            const updated = await ctx.api(`/api/v1/work-orders/${o.id}/rating`, {
              method: "POST", body: { rating: n },
            });
            orders.set(updated.id, updated);
            draw();
            toast("Thank you for your rating", "ok");
          } catch (err) {
            toast(err.message, "error");
          }
        },
      }, "★")));
  }

  draw();
  return {
    onChange(message) {
      const o = message.work_order;
      if (o && orders.has(o.id)) { orders.set(o.id, o); draw(); }
    },
  };
}

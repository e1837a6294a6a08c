// The work-order board: open orders by priority, SLA clocks ticking, breached ones standing
// out, and the actions the user's role may take. Live: every change arrives over SSE.

import { photoUrl } from "../api.js";
import { h, clear, span, when, toast, prettyType } from "../dom.js";
import { actionsFor } from "../roles.js";

const PRIORITIES = [
  ["P1", "P1 · emergency"], ["P2", "P2 · urgent"], ["P3", "P3 · repair"], ["P4", "P4 · routine"],
];
const ACTIVE = new Set(["open", "assigned", "in_progress", "on_hold", "resolved"]);

// Which clock the card shows: the response clock until someone acknowledges, then the
// resolve clock; a held order's clock is paused, a resolved one waits for closing.
export function clockOf(order) {
  if (order.state === "on_hold") return { label: "on hold", due: null, breached: order.resolve_breached };
  if (order.state === "resolved") return { label: "awaiting close", due: null, breached: order.resolve_breached };
  if (order.acknowledged_at === null && (order.state === "open" || order.state === "assigned")) {
    return { label: "respond", due: order.response_due, breached: order.response_breached };
  }
  return { label: "resolve", due: order.resolve_due, breached: order.resolve_breached };
}

export async function render(root, ctx) {
  const orders = new Map();
  const fresh = new Set();
  const summary = h("div", { class: "summary", id: "board-summary" });
  const columns = h("div", { class: "board", id: "board" });
  const dialog = h("dialog", { class: "action-dialog", id: "action-dialog" });
  root.append(
    h("div", { class: "view-head" }, h("h1", {}, "Work orders"), summary),
    columns, dialog,
  );

  const list = await ctx.api("/api/v1/work-orders", {
    params: { site_id: ctx.site, active: true, limit: 1000 },
  });
  for (const o of list) orders.set(o.id, o);

  function draw() {
    clear(columns);
    const now = Date.now() / 1000;
    let breached = 0;
    for (const [prio, title] of PRIORITIES) {
      const mine = [...orders.values()].filter((o) => o.priority === prio)
        .sort((a, b) => (dueOf(a) ?? Infinity) - (dueOf(b) ?? Infinity) || a.id - b.id);
      const col = h("section", { class: `column prio-${prio}`, "aria-label": title },
        h("h2", {}, title, h("span", { class: "count" }, String(mine.length))));
      if (!mine.length) col.append(h("p", { class: "muted empty" }, "Nothing open."));
      for (const o of mine) {
        const c = card(o, now);
        if (c.classList.contains("breached")) breached += 1;
        col.append(c);
      }
      columns.append(col);
    }
    clear(summary).append(
      h("span", { class: "pill" }, `${orders.size} open`),
      h("span", { class: `pill ${breached ? "bad" : "good"}`, id: "breached-count" }, `${breached} breached`),
    );
  }

  function dueOf(o) { return clockOf(o).due; }

  function card(o, now) {
    const clock = clockOf(o);
    const late = clock.breached || (clock.due !== null && clock.due < now);
    const actions = actionsFor(o, ctx.me).map((a) =>
      h("button", {
        type: "button", class: `act act-${a.action}`, dataset: { action: a.action },
        onclick: () => act(o, a),
      }, a.label));
    const el = h("article", {
      class: `order state-${o.state}${late ? " breached" : ""}${fresh.has(o.id) ? " fresh" : ""}`,
      id: `order-${o.id}`, dataset: { id: o.id, state: o.state },
    },
      h("header", {},
        h("span", { class: "oid" }, `#${o.id}`),
        h("span", { class: `badge state ${o.state}` }, o.state.replace("_", " ")),
        o.rework ? h("span", { class: "badge rework" }, "rework") : null,
        o.escalation_level ? h("span", { class: "badge esc" }, `escalated ×${o.escalation_level}`) : null,
      ),
      h("h3", {}, o.title),
      h("p", { class: "meta" },
        o.device_id ? h("a", { href: `#/device/${encodeURIComponent(o.device_id)}` }, o.device_id) : (o.location || o.source),
        o.event_type ? ` · ${prettyType(o.event_type)}` : "",
        o.event_count > 1 ? ` · ×${o.event_count}` : "",
        o.condition_cleared ? " · cleared" : ""),
      h("p", { class: "meta" }, `${o.team}`, o.assignee ? ` · ${o.assignee}` : " · unassigned",
        ` · opened ${when(o.opened_at)}`),
      o.photos && o.photos.length ? h("div", { class: "photo-previews" }, o.photos.map(photoUrl).filter(Boolean).map((url) =>
        h("a", { href: url, target: "_blank", rel: "noopener" },
          h("img", { src: url, alt: "reported photo", class: "thumb" })))) : null,
      h("div", { class: `clock${late ? " late" : ""}`, dataset: { due: clock.due ?? "" } },
        h("span", { class: "label" }, clock.label),
        h("span", { class: "value" }, clock.due === null ? "" : span(clock.due - now)),
      ),
      actions.length ? h("div", { class: "actions" }, actions) : null,
    );
    return el;
  }

  function act(order, a) {
    clear(dialog);
    const note = h("input", { name: "note", placeholder: "note (optional)", maxlength: 2000 });
    const fields = [];
    let assignee = null;
    let rating = null;
    let comment = null;
    if (a.action === "assign") {
      assignee = h("input", { name: "assignee", required: true, placeholder: "technician username", value: order.assignee || "" });
      fields.push(h("label", {}, "Assignee", assignee));
    }
    if (a.action === "close") {
      rating = h("select", { name: "rating" },
        h("option", { value: "" }, "no rating"),
        ...[5, 4, 3, 2, 1].map((n) => h("option", { value: n }, `${"★".repeat(n)} (${n})`)));
      comment = h("input", { name: "comment", placeholder: "owner's comment (optional)", maxlength: 2000 });
      fields.push(h("label", {}, "Satisfaction", rating), h("label", {}, "Comment", comment));
    }
    fields.push(h("label", {}, "Note", note));
    const form = h("form", { method: "dialog", class: "card" },
      h("h2", {}, `${a.label} #${order.id}`),
      h("p", { class: "muted" }, order.title),
      ...fields,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "link", onclick: () => dialog.close() }, "Cancel"),
        h("button", { type: "submit", class: "primary", id: "confirm" }, a.label)),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const body = { to: a.to, note: note.value };
        if (assignee) body.assignee = assignee.value.trim();
        let updated = await ctx.api(`/api/v1/work-orders/${order.id}/transition`, { method: "POST", body });
        if (rating && rating.value) {
          updated = await ctx.api(`/api/v1/work-orders/${order.id}/rating`, {
            method: "POST", body: { rating: Number(rating.value), comment: comment.value || null },
          });
        }
        apply(updated);
        dialog.close();
        toast(`#${order.id} ${updated.state.replace("_", " ")}`, "ok");
      } catch (err) {
        toast(err.message, "error");
      }
    });
    dialog.append(form);
    dialog.showModal();
  }

  function apply(order) {
    if (order.site_id !== ctx.site) return;
    if (ACTIVE.has(order.state)) orders.set(order.id, order);
    else orders.delete(order.id);
    fresh.add(order.id);
    setTimeout(() => {
      fresh.delete(order.id);
      const el = document.getElementById(`order-${order.id}`);
      if (el) el.classList.remove("fresh");
    }, 4000);
    draw();
  }

  const tick = setInterval(() => {
    const now = Date.now() / 1000;
    for (const el of columns.querySelectorAll(".clock[data-due]")) {
      const due = Number(el.dataset.due);
      if (!el.dataset.due) continue;
      el.querySelector(".value").textContent = span(due - now);
      if (due < now && !el.classList.contains("late")) {
        el.classList.add("late");
        el.closest(".order").classList.add("breached");
      }
    }
  }, 1000);

  draw();
  return {
    onChange(message) { if (message.work_order) apply(message.work_order); },
    dispose() { clearInterval(tick); if (dialog.open) dialog.close(); },
  };
}

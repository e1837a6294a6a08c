// Which work-order actions a role may offer, mirroring cloud/lifecycle.py. The API enforces
// the same rules; this only hides buttons that would be refused.

export const TRANSITIONS = {
  open: ["assigned", "on_hold", "cancelled"],
  assigned: ["open", "in_progress", "on_hold", "cancelled"],
  in_progress: ["on_hold", "resolved", "cancelled"],
  on_hold: ["open", "assigned", "in_progress", "cancelled"],
  resolved: ["closed", "in_progress"],
  closed: [],
  cancelled: [],
};
const MANAGERS = new Set(["admin", "dispatcher"]);
const FIELD = new Set(["technician", "security"]);
const FIELD_MOVES = new Set(["assigned", "in_progress", "on_hold", "resolved"]);

// The actions shown on a card: { action, to, label }.
export function actionsFor(order, me) {
  const allowed = new Set(TRANSITIONS[order.state] || []);
  const out = [];
  const add = (action, to, label) => { if (allowed.has(to)) out.push({ action, to, label }); };
  if (MANAGERS.has(me.role)) {
    add("assign", "assigned", "Assign");
    add("start", "in_progress", order.state === "resolved" ? "Reopen" : "Start");
    add("hold", "on_hold", "Hold");
    add("resolve", "resolved", "Resolve");
    add("close", "closed", "Close");
    return out;
  }
  if (!FIELD.has(me.role)) return out;
  if (order.state === "open") {
    add("take", "assigned", "Take");
    return out;
  }
  if (order.assignee !== me.username) return out;
  for (const [action, to, label] of [
    ["start", "in_progress", "Start"], ["hold", "on_hold", "Hold"], ["resolve", "resolved", "Resolve"],
  ]) {
    if (FIELD_MOVES.has(to) && !(order.state === "resolved" && to === "in_progress")) add(action, to, label);
  }
  return out;
}

export function canRate(order, me) {
  return order.state === "closed" && order.rating === null
    && (MANAGERS.has(me.role) || order.reporter === me.username);
}

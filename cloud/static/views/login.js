// Sign in with the cloud API's users (POST /api/v1/auth/login).

import { signIn } from "../api.js";
import { h } from "../dom.js";

export function render(root, ctx) {
  const error = h("p", { class: "error", id: "login-error", role: "alert" });
  const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const pass = h("input", {
    id: "password", name: "password", type: "password", autocomplete: "current-password", required: true,
  });
  const form = h("form", { class: "login card", id: "login-form" },
    h("h1", {}, "gatehouse ops"),
    h("p", { class: "muted" }, "Work orders, the estate, alarms and energy, live."),
    h("label", {}, "Username", user),
    h("label", {}, "Password", pass),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      await signIn(user.value.trim(), pass.value);
      ctx.me = null;
      ctx.go("#/board");
    } catch (err) {
      error.textContent = err.status === 401 ? "Wrong username or password." : err.message;
    }
  });
  root.append(h("div", { class: "login-wrap" }, form));
  user.focus();
}

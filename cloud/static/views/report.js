// "Report a problem": a resident or staff member describes a problem (what, where, which
// device if known, up to 3 photos). Photos are uploaded first, one by one, to
// POST /api/v1/reports/photos; the report then carries their references and becomes a
// work order dispatched like any other (POST /api/v1/reports). Phone-first: one column.

import { h, toast } from "../dom.js";

export const MAX_PHOTOS = 3;
const MAX_BYTES = 4 * 1024 * 1024;
const CATEGORIES = [
  ["engineering", "Building / plumbing / electrics"], ["elevator", "Elevator"],
  ["cleaning", "Cleaning"], ["security", "Security / gates"], ["energy", "Energy / meters"],
];

export async function render(root, ctx) {
  const devices = await ctx.api("/api/v1/devices", { params: { site_id: ctx.site } });
  const error = h("p", { class: "error", id: "report-error", role: "alert" });
  const previews = h("div", { class: "photo-previews", id: "report-previews" });
  const photos = h("input", {
    type: "file", id: "report-photos", name: "photos", accept: "image/jpeg,image/png", multiple: true,
    onchange: () => showPreviews(),
  });
  const category = h("select", { id: "report-category", name: "category", required: true },
    CATEGORIES.map(([v, label]) => h("option", { value: v }, label)));
  const device = h("select", { id: "report-device", name: "device_id" },
    h("option", { value: "" }, "— not about a device / don't know —"),
    devices.map((d) => h("option", { value: d.device_id },
      [d.device_id, d.building ? ` · ${d.building}` : "", d.floor !== null ? ` floor ${d.floor}` : ""].join(""))));
  const title = h("input", { id: "report-title", name: "title", required: true, maxlength: 200,
    placeholder: "e.g. Water leaking in B1 lobby" });
  const description = h("textarea", { id: "report-description", name: "description", maxlength: 5000,
    rows: 4, placeholder: "What is wrong, since when?" });
  const location = h("input", { id: "report-location", name: "location", maxlength: 300,
    placeholder: "e.g. Building B1, ground floor, next to the lift" });
  const emergency = h("input", { type: "checkbox", id: "report-emergency", name: "emergency" });
  const submit = h("button", { type: "submit", class: "primary", id: "report-submit" }, "Send report");

  function chosen() { return [...photos.files]; }

  function check() {
    const files = chosen();
    if (files.length > MAX_PHOTOS) return `At most ${MAX_PHOTOS} photos.`;
    for (const f of files) {
      if (!["image/jpeg", "image/png"].includes(f.type)) return `${f.name}: only JPEG or PNG photos.`;
      if (f.size > MAX_BYTES) return `${f.name}: larger than 4 MiB.`;
    }
    return "";
  }

  function showPreviews() {
    previews.replaceChildren(...chosen().slice(0, MAX_PHOTOS).map((f) =>
      h("img", { src: URL.createObjectURL(f), alt: f.name, class: "thumb" })));
    error.textContent = check();
  }

  const form = h("form", { class: "card report-form", id: "report-form" },
    h("label", {}, "What is the problem?", title),
    h("label", {}, "Kind of problem", category),
    h("label", {}, "Details", description),
    h("label", {}, "Where", location),
    h("label", {}, "Device (optional)", device),
    h("label", {}, `Photos (up to ${MAX_PHOTOS}, JPEG or PNG)`, photos),
    previews,
    h("label", { class: "inline" }, emergency, " Danger to people or property right now"),
    error,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const problem = check();
    if (problem) { error.textContent = problem; return; }
    error.textContent = "";
    submit.disabled = true;
    try {
      const refs = [];
      for (const file of chosen()) {
        submit.textContent = `Uploading photo ${refs.length + 1}…`;
        const stored = await ctx.upload("/api/v1/reports/photos", file, { site_id: ctx.site });
        refs.push(stored.ref);
      }
      submit.textContent = "Sending…";
      const order = await ctx.api("/api/v1/reports", {
        method: "POST",
        body: {
          site_id: ctx.site, category: category.value, title: title.value.trim(),
          description: description.value, location: location.value.trim() || null,
          device_id: device.value || null, photos: refs, emergency: emergency.checked,
        },
      });
      toast(`Report #${order.id} sent`, "ok");
      ctx.go("#/reports");
    } catch (err) {
      error.textContent = err.message;
      submit.disabled = false;
      submit.textContent = "Send report";
    }
  });
  root.append(h("div", { class: "view-head" }, h("h1", {}, "Report a problem")), form);
}

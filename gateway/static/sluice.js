// The catalog's filters, without a round trip: optional. Without JavaScript the form submits
// (GET /catalog?provider=...&policy=...) and the server filters; with it, rows are hidden in place.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form.filters");
  const table = document.querySelector("table.catalog");
  if (!form || !table) return;
  const provider = form.querySelector("[data-filter=provider]");
  const policy = form.querySelector("[data-filter=policy]");
  const shown = form.querySelector("[data-shown]");
  const apply = () => {
    if (table.dataset.complete !== "true") { form.submit(); return; }
    let count = 0;
    for (const body of table.tBodies) {
      let any = false;
      for (const row of body.querySelectorAll("tr[data-channel]")) {
        const ok = (!provider.value || row.dataset.provider === provider.value) &&
          (!policy.value || row.dataset.passes.split(" ").includes(policy.value));
        row.hidden = !ok;
        if (ok) { any = true; count += 1; }
      }
      body.hidden = !any;
    }
    shown.textContent = String(count);
    const query = new URLSearchParams();
    if (provider.value) query.set("provider", provider.value);
    if (policy.value) query.set("policy", policy.value);
    const search = query.toString();
    history.replaceState(null, "", search ? "/catalog?" + search : "/catalog");
  };
  provider.addEventListener("change", apply);
  policy.addEventListener("change", apply);
});

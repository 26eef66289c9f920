// Network tools page (SPEC D2; webui/web/templates/tools.html): the output
// streams into the page line by line as the box produces it.
(function () {
  "use strict";
  var form = document.getElementById("tool-form");
  if (!form) return;
  var out = document.getElementById("tool-output"), status = document.getElementById("tool-status");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var fields = { ping: ["host", "count"], traceroute: ["host"], dns: ["name", "type", "server"], tcp: ["host", "port"] };
  function sync() {
    var tool = form.elements.tool.value;
    form.querySelectorAll("[data-field]").forEach(function (el) { el.hidden = fields[tool].indexOf(el.dataset.field) < 0; });
  }
  form.elements.tool.addEventListener("change", sync);
  sync();
  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var tool = form.elements.tool.value, body = {};
    fields[tool].forEach(function (f) {
      var v = form.elements[f].value.trim();
      if (v !== "") body[f] = (f === "count" || f === "port") ? Number(v) : v;
    });
    var btn = form.querySelector("button[type=submit]");
    out.textContent = ""; status.textContent = status.dataset.running; status.classList.remove("error");
    btn.disabled = true;
    try {
      var res = await fetch("/api/tools/" + tool, { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) });
      if (!res.ok) { var e = await res.json().catch(function () { return {}; }); throw new Error(e.error || res.statusText); }
      var reader = res.body.getReader(), dec = new TextDecoder();
      for (;;) {
        var r = await reader.read();
        if (r.done) break;
        out.textContent += dec.decode(r.value, { stream: true });
      }
      status.textContent = status.dataset.done;
    } catch (e) {
      status.textContent = e.message; status.classList.add("error");
    } finally { btn.disabled = false; }
  });
})();

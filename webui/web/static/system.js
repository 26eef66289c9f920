// System page (webui/web/templates/tools_system.html): remote management
// switches, the TLS certificate, and the settings file. API text is
// written with textContent only.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  if (!$("remote-form")) return;
  var api = function (m, p, b) { return window.tandem.api(m, p, b); };
  function say(el, text, bad) { el.textContent = text; el.classList.toggle("error", !!bad); }

  async function loadRemote() {
    try {
      var d = await api("GET", "/api/network/remote");
      $("remote-ping").checked = d.settings.ping;
      $("remote-http").checked = d.settings.http;
      $("remote-https").checked = d.settings.https_admin;
    } catch (e) { say($("remote-status"), e.message, true); }
  }
  $("remote-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    try {
      await api("PUT", "/api/network/remote", { ping: $("remote-ping").checked, http: $("remote-http").checked, https_admin: $("remote-https").checked });
      say($("remote-status"), $("remote-status").dataset.saved);
    } catch (e) { say($("remote-status"), e.message, true); }
  });

  async function loadCert() {
    var dl = $("cert-info");
    try {
      var d = await api("GET", "/api/certificates");
      dl.replaceChildren();
      var c = d.active;
      if (!c) return;
      var rows = [["", c.source === "uploaded" ? dl.dataset.uploaded : dl.dataset.selfsigned], ["Subject", c.subject], ["Issuer", c.issuer],
        ["DNS", (c.dns_names || []).join(", ")], ["Valid", c.not_before + " – " + c.not_after], ["SHA-256", c.sha256]];
      rows.forEach(function (r) {
        var dt = document.createElement("dt"), dd = document.createElement("dd");
        dt.textContent = r[0]; dd.textContent = r[1];
        dl.appendChild(dt); dl.appendChild(dd);
      });
    } catch (e) { say($("cert-status"), e.message, true); }
  }
  $("cert-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    try {
      var d = await api("PUT", "/api/certificates", { cert_pem: $("cert-pem").value, key_pem: $("key-pem").value });
      say($("cert-status"), d.warning || "✓");
      $("key-pem").value = "";
      loadCert();
    } catch (e) { say($("cert-status"), e.message, true); }
  });
  $("cert-remove").addEventListener("click", async function (ev) {
    if (!confirm(ev.target.dataset.confirm)) return;
    try { await api("DELETE", "/api/certificates"); say($("cert-status"), "✓"); loadCert(); }
    catch (e) { say($("cert-status"), e.message, true); }
  });

  $("settings-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var f = $("settings-file").files[0], out = $("settings-report");
    if (!f) return;
    out.replaceChildren();
    try {
      var doc = JSON.parse(await f.text());
      var rep = await api("POST", "/api/settings/import", doc);
      ["domains", "accounts", "aliases", "kv"].forEach(function (k) {
        var li = document.createElement("li"), n = rep[k];
        li.textContent = k + ": " + n.created + " created, " + n.updated + " updated, " + n.unchanged + " unchanged, " + n.failed + " failed";
        out.appendChild(li);
      });
      (rep.errors || []).forEach(function (e) { var li = document.createElement("li"); li.className = "error"; li.textContent = e; out.appendChild(li); });
      say($("settings-status"), "✓", (rep.errors || []).length > 0);
    } catch (e) { say($("settings-status"), e.message, true); }
  });

  loadRemote();
  loadCert();
})();

// Tandem web admin behaviour. No inline scripts (strict CSP): pages declare
// what they need with data-* attributes, see webui/web/README.md.
// Everything from the API is written with textContent, never innerHTML.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  async function api(method, path, body) {
    var opts = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      if (typeof body === "string") { opts.body = body; opts.headers["Content-Type"] = "text/plain"; }
      else { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
    }
    var res = await fetch(path, opts);
    if (res.status === 401) { location.href = "/login"; throw new Error("login needed"); }
    var text = await res.text();
    var data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!res.ok) throw new Error((data && data.error) || (res.status + " " + res.statusText));
    return data;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.map(function (x) { return typeof x === "object" ? (x.addr || x.address || JSON.stringify(x)) : String(x); }).join(", ");
    if (typeof v === "object") return JSON.stringify(v);
    if (typeof v === "string" && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) {
      if (v.indexOf("0001-01-01") === 0) return "";
      var d = new Date(v); if (!isNaN(d)) return d.toLocaleString();
    }
    return String(v);
  }
  function human(n) {
    if (!n) return "";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function get(o, path) { return path.split(".").reduce(function (a, k) { return a == null ? a : a[k]; }, o); }
  function fill(tpl, row) { return tpl.replace(/\{(\w+)\}/g, function (_, k) { return encodeURIComponent(row[k]); }); }

  function queryOf(form) {
    var p = new URLSearchParams();
    if (!form) return p;
    new FormData(form).forEach(function (v, k) { if (v !== "") p.set(k, v); });
    return p;
  }

  async function loadTable(t) {
    var body = t.tBodies[0] || t.appendChild(document.createElement("tbody"));
    var cols = t.dataset.cols.split(",");
    var form = t.dataset.queryForm ? document.getElementById(t.dataset.queryForm) : null;
    var q = queryOf(form);
    var size = parseInt(t.dataset.pageSize || "0", 10);
    var offset = parseInt(t.dataset.offset || "0", 10);
    if (size) { q.set("offset", offset); q.set("limit", size); }
    var status = document.getElementById(t.id + "-status");
    var data;
    try {
      var qs = q.toString();
      data = await api("GET", t.dataset.src + (qs ? (t.dataset.src.indexOf("?") < 0 ? "?" : "&") + qs : ""));
    } catch (e) { if (status) status.textContent = e.message; return; }
    var rows = t.dataset.list ? data[t.dataset.list] : data;
    rows = rows || [];
    body.replaceChildren();
    rows.forEach(function (row) {
      var tr = body.insertRow();
      cols.forEach(function (c) {
        var td = tr.insertCell();
        var v = get(row, c);
        if (c === t.dataset.link) {
          var a = document.createElement("a"); a.href = "#"; a.textContent = fmt(v);
          a.addEventListener("click", function (ev) { ev.preventDefault(); showDetail(t, row); });
          td.appendChild(a);
        } else td.textContent = /(_bytes|^size)$/.test(c) ? human(v) : (typeof v === "boolean" ? (v ? "✓" : "") : fmt(v));
      });
      if (t.dataset.actions) {
        var td = tr.insertCell();
        t.dataset.actions.split(";").forEach(function (spec) {
          var i = spec.indexOf(":"), label = spec.slice(0, i), rest = spec.slice(i + 1).trim().split(" ");
          var b = document.createElement("button");
          b.type = "button"; b.className = rest[0] === "DELETE" ? "btn-danger" : "btn-quiet";
          b.textContent = t.dataset["label" + label.charAt(0).toUpperCase() + label.slice(1)] || label;
          b.addEventListener("click", async function () {
            if (rest[0] === "DELETE" && !confirm(t.dataset.confirm || "?")) return;
            try { await api(rest[0], fill(rest[1], row)); if (status) status.textContent = ""; loadTable(t); }
            catch (e) { if (status) status.textContent = e.message; }
          });
          td.appendChild(b); td.appendChild(document.createTextNode(" "));
        });
      }
    });
    if (status) status.textContent = rows.length ? "" : (t.dataset.empty || "");
    var pager = document.getElementById(t.id + "-pager");
    if (pager && size) {
      var total = data.total || 0;
      pager.querySelector(".pos").textContent = total ? (offset + 1) + "–" + Math.min(offset + size, total) + " / " + total : "0";
      pager.querySelector(".prev").disabled = offset === 0;
      pager.querySelector(".next").disabled = offset + size >= total;
    }
  }

  async function showDetail(t, row) {
    var out = document.getElementById(t.dataset.detail);
    if (!out) return;
    out.textContent = "…";
    try {
      var d = await api("GET", fill(t.dataset.detailSrc, row));
      if (d && d.attempts) {
        // Each attempt is the SMTP dialogue as text (storage.Transcripts).
        out.textContent = d.attempts.map(function (a) { return typeof a === "string" ? a : JSON.stringify(a, null, 2); }).join("\n\n");
      } else out.textContent = JSON.stringify(d, null, 2);
    } catch (e) { out.textContent = e.message; }
  }

  function reload(ids) {
    (ids || "").split(",").forEach(function (id) { var t = document.getElementById(id.trim()); if (t) loadTable(t); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-src]").forEach(function (t) {
      loadTable(t);
      var pager = document.getElementById(t.id + "-pager");
      if (pager) {
        pager.querySelector(".prev").addEventListener("click", function () { t.dataset.offset = Math.max(0, (+t.dataset.offset || 0) - (+t.dataset.pageSize)); loadTable(t); });
        pager.querySelector(".next").addEventListener("click", function () { t.dataset.offset = (+t.dataset.offset || 0) + (+t.dataset.pageSize); loadTable(t); });
      }
      if (t.dataset.queryForm) {
        var f = document.getElementById(t.dataset.queryForm);
        f.addEventListener("submit", function (ev) { ev.preventDefault(); t.dataset.offset = 0; loadTable(t); });
      }
    });
    document.querySelectorAll("form[data-api]").forEach(function (f) {
      f.addEventListener("submit", async function (ev) {
        ev.preventDefault();
        var spec = f.dataset.api.split(" "), body = {};
        new FormData(f).forEach(function (v, k) {
          if (k === "csrf") return;
          if (k === "targets") body[k] = v.split(/[\s,]+/).filter(Boolean);
          else if (k === "admin") body[k] = v === "on" || v === "true";
          else body[k] = v;
        });
        var err = f.querySelector(".error");
        try {
          await api(spec[0], fill(spec[1], body), body);
          if (err) err.textContent = "";
          f.reset(); reload(f.dataset.reload);
        } catch (e) { if (err) err.textContent = e.message; }
      });
    });
    // The cluster page follows a failover live (it used to be a meta refresh).
    if (document.body.dataset.page === "cluster") setTimeout(function () { location.reload(); }, 5000);
    var imp = document.getElementById("import-form");
    if (imp) imp.addEventListener("submit", runImport);
    document.querySelectorAll("[data-stat]").forEach(async function (el) {
      try { var d = await api("GET", el.dataset.stat); el.textContent = fmt(get(d, el.dataset.field)); } catch (e) { el.textContent = "–"; }
    });
  });

  // Account import: the API streams one NDJSON line per account
  // (webui/api.go importAccounts); the bar follows it.
  async function runImport(ev) {
    ev.preventDefault();
    var f = ev.target, err = f.querySelector(".error");
    var file = f.querySelector("input[type=file]").files[0];
    var text = file ? await file.text() : f.querySelector("textarea").value;
    var bar = document.getElementById("import-bar"), label = document.getElementById("import-pct");
    var list = document.getElementById("import-results"), sum = document.getElementById("import-summary");
    list.replaceChildren(); bar.style.width = "0"; err.textContent = ""; sum.textContent = "";
    var res = await fetch("/api/accounts/import", { method: "POST", credentials: "same-origin", body: text,
      headers: { "X-CSRF-Token": csrf, "Content-Type": "text/csv" } });
    if (!res.ok) { var e = await res.json().catch(function () { return {}; }); err.textContent = e.error || res.statusText; return; }
    var reader = res.body.getReader(), dec = new TextDecoder(), buf = "", total = 0, done = 0;
    for (;;) {
      var r = await reader.read();
      if (r.done) break;
      buf += dec.decode(r.value, { stream: true });
      var lines = buf.split("\n"); buf = lines.pop();
      lines.forEach(function (l) {
        if (!l) return;
        var m = JSON.parse(l);
        if (m.total !== undefined && !m.line && !m.done) { total = m.total; return; }
        if (m.done) { sum.textContent = f.dataset.summary.replace("{created}", m.created || 0).replace("{failed}", m.failed || 0); bar.style.width = "100%"; label.textContent = "100%"; return; }
        done++;
        var li = document.createElement("li");
        li.className = m.status === "created" ? "ok" : "error";
        li.textContent = (f.dataset.line || "line") + " " + m.line + ": " + (m.address || "") + " — " + m.status + (m.error ? " (" + m.error + ")" : "");
        list.appendChild(li);
        var pct = total ? Math.floor(done * 100 / total) : 100;
        bar.style.width = pct + "%"; label.textContent = pct + "%";
      });
    }
    reload("accounts");
  }

  window.tandem = { api: api, reload: reload };
})();

// Behaviour of the DNS and Filters pages, the domain settings on the
// domains page and the quarantine actions on the security page
// (webui/pages_more.go). Strict CSP: no inline code. Everything from the
// API is written with textContent, never parsed as markup, so record values and
// list entries cannot inject markup.
(function () {
  "use strict";
  var api = window.tandem.api;
  function $(id) { return document.getElementById(id); }

  // row adds a table row of text cells; buttons: [{label, danger, confirm, run}].
  function row(table, cells, buttons) {
    var tr = table.tBodies[0].insertRow();
    cells.forEach(function (c) {
      var td = tr.insertCell();
      td.textContent = c === undefined || c === null ? "" : String(c);
      // Long values (DKIM keys, TXT records) wrap anywhere instead of
      // widening the table (style.css td.wrap).
      if (td.textContent.length > 48) td.className = "wrap";
    });
    if (buttons) {
      var td = tr.insertCell();
      td.className = "actions";
      buttons.forEach(function (b) {
        var el = document.createElement("button");
        el.type = "button"; el.className = b.danger ? "btn-danger" : "btn-quiet"; el.textContent = b.label;
        el.addEventListener("click", async function () {
          if (b.confirm && !confirm(b.confirm)) return;
          var st = $(table.id + "-status");
          try { await b.run(); if (st) st.textContent = ""; } catch (e) { if (st) st.textContent = e.message; else alert(e.message); }
        });
        td.appendChild(el); td.appendChild(document.createTextNode(" "));
      });
    }
    return tr;
  }
  function clear(table) { table.tBodies[0].replaceChildren(); }
  function empty(table, n) { var st = $(table.id + "-status"); if (st) st.textContent = n ? "" : (table.dataset.empty || ""); }
  function fail(table, e) { var st = $(table.id + "-status"); if (st) st.textContent = e.message; }
  // onSubmit runs fn on a form's submit and shows its error in .error.
  function onSubmit(form, fn) {
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      var err = form.querySelector(".error");
      try { await fn(); if (err) err.textContent = ""; } catch (e) { if (err) err.textContent = e.message; }
    });
  }
  var enc = encodeURIComponent;

  // ---- DNS page ----
  function dnsPage() {
    var pick = $("dns-domain"), table = $("dns-records"), form = $("dns-form");
    var editing = null; // the record being edited, or null when adding
    function domain() { return pick.value; }
    function setEdit(r) {
      editing = r;
      var title = $("dns-form-title");
      title.textContent = r ? title.dataset.edit : title.dataset.add;
      $("dns-cancel").hidden = !r;
      if (r) {
        $("dns-name").value = r.name; $("dns-type").value = r.type; $("dns-ttl").value = r.ttl || ""; $("dns-value").value = r.value;
        $("dns-value").focus();
      } else form.reset();
    }
    var zone = null;
    async function load() {
      clear(table); clear($("dns-publish")); $("dns-check").hidden = true; $("dns-check-summary").textContent = "";
      if (!domain()) return;
      try { zone = await api("GET", "/api/dns/" + enc(domain()) + "/records"); } catch (e) { fail(table, e); return; }
      showZone(zone);
      loadPublish();
    }
    function showZone(z) {
      zone = z; clear(table);
      z.records.forEach(function (r) {
        var btns = [];
        if (r.type !== "SOA" && r.type !== "NS") btns.push({ label: table.dataset.labelEdit, run: async function () { setEdit(r); } });
        if (!r.auto) btns.push({ label: table.dataset.labelDelete, danger: true, confirm: table.dataset.confirm, run: async function () {
          showZone(await api("DELETE", "/api/dns/" + enc(domain()) + "/records?name=" + enc(r.name) + "&type=" + enc(r.type) + "&value=" + enc(r.value)));
          loadPublish();
        } });
        var tr = row(table, [r.name, r.type, r.ttl, r.value, r.auto ? table.dataset.auto : ""], btns);
        if (r.auto) tr.className = "muted";
      });
      empty(table, z.records.length);
    }
    async function loadPublish() {
      var t = $("dns-publish"), notes = $("dns-notes");
      clear(t); notes.replaceChildren();
      try {
        var p = await api("GET", "/api/domains/" + enc(domain()) + "/dns");
        p.records.forEach(function (r) { row(t, [r.name, r.type, r.ttl, r.value]); });
        (p.notes || []).forEach(function (n) { var li = document.createElement("li"); li.textContent = n; notes.appendChild(li); });
        empty(t, p.records.length);
      } catch (e) { fail(t, e); }
    }
    onSubmit(form, async function () {
      var ttl = parseInt($("dns-ttl").value || "0", 10) || 0;
      var name = $("dns-name").value.trim(), type = $("dns-type").value, value = $("dns-value").value;
      var z;
      if (editing) {
        // PUT makes the admin's records of a name and type exactly the
        // given values: keep the siblings of the edited record.
        var values = [value];
        zone.records.forEach(function (r) {
          if (!r.auto && r.name === editing.name && r.type === editing.type && r.value !== editing.value) values.push(r.value);
        });
        if (name !== editing.name || type !== editing.type) {
          z = await api("POST", "/api/dns/" + enc(domain()) + "/records", { name: name, type: type, ttl: ttl, value: value });
          if (!editing.auto) z = await api("DELETE", "/api/dns/" + enc(domain()) + "/records?name=" + enc(editing.name) + "&type=" + enc(editing.type) + "&value=" + enc(editing.value));
        } else {
          if (editing.auto) values = [value];
          z = await api("PUT", "/api/dns/" + enc(domain()) + "/records", { name: name, type: type, ttl: ttl, values: values });
        }
      } else {
        z = await api("POST", "/api/dns/" + enc(domain()) + "/records", { name: name, type: type, ttl: ttl, value: value });
      }
      setEdit(null); showZone(z); loadPublish();
    });
    $("dns-cancel").addEventListener("click", function () { setEdit(null); });
    pick.addEventListener("change", function () { setEdit(null); load(); });
    $("dns-check-btn").addEventListener("click", async function () {
      var btn = this, t = $("dns-check"), sum = $("dns-check-summary");
      var label = btn.textContent; btn.disabled = true; btn.textContent = btn.dataset.running;
      clear(t);
      try {
        var c = await api("GET", "/api/domains/" + enc(domain()) + "/dns/check");
        c.results.forEach(function (r) {
          var tr = row(t, [r.record.name, r.record.type, r.record.value, t.dataset[r.status] || r.status, (r.found || []).join(", ") + (r.error ? " " + r.error : "")]);
          tr.cells[3].className = r.status === "present" ? "ok" : "error";
        });
        t.hidden = false;
        sum.textContent = c.ok ? sum.dataset.ok : sum.dataset.bad;
        sum.className = c.ok ? "ok" : "error";
      } catch (e) { sum.textContent = e.message; sum.className = "error"; }
      btn.disabled = false; btn.textContent = label;
    });
    load();
  }

  // ---- Filters page ----
  function filtersPage() {
    var pol = $("policies"), lists = $("lists");
    async function loadPolicies() {
      clear(pol);
      var ps;
      try { ps = await api("GET", "/api/filter/policy"); } catch (e) { fail(pol, e); return; }
      ps.forEach(function (sp) {
        var p = sp.policy || {};
        row(pol, [sp.scope, p.action || "", p.threshold === undefined ? "" : p.threshold, p.tag === undefined ? "" : p.tag], [
          { label: pol.dataset.labelDelete, danger: true, confirm: pol.dataset.confirm, run: async function () {
            await api("DELETE", "/api/filter/policy/" + enc(sp.scope)); loadPolicies();
          } }]);
      });
      empty(pol, ps.length);
    }
    onSubmit($("policy-form"), async function () {
      var body = {}, th = $("policy-threshold").value, tag = $("policy-tag").value, act = $("policy-action").value;
      if (act) body.action = act;
      if (th !== "") body.threshold = parseFloat(th);
      if (tag !== "") body.tag = tag;
      await api("PUT", "/api/filter/policy/" + enc($("policy-scope").value.trim() || "global"), body);
      loadPolicies();
    });
    async function loadLists() {
      clear(lists);
      var docs;
      try { docs = await api("GET", "/api/filter/lists"); } catch (e) { fail(lists, e); return; }
      var n = 0;
      docs.forEach(function (d) {
        ["block", "allow"].forEach(function (l) {
          (d[l] || []).forEach(function (entry) {
            n++;
            row(lists, [d.scope, lists.dataset[l], entry], [{ label: lists.dataset.labelDelete, danger: true, confirm: lists.dataset.confirm, run: async function () {
              await api("DELETE", "/api/filter/lists", { scope: d.scope, list: l, entries: [entry] }); loadLists();
            } }]);
          });
        });
      });
      empty(lists, n);
    }
    onSubmit($("lists-form"), async function () {
      await api("POST", "/api/filter/lists", { scope: $("lists-scope").value.trim(), list: $("lists-list").value, entries: [$("lists-entry").value.trim()] });
      $("lists-entry").value = "";
      loadLists();
    });
    var grey = $("greylist-form");
    async function loadGrey() {
      try {
        var g = (await api("GET", "/api/filter/greylist?limit=0")).settings;
        $("grey-enabled").checked = !!g.enabled;
        $("grey-delay").value = g.delay_seconds || ""; $("grey-expiry").value = g.expiry_seconds || ""; $("grey-pass").value = g.pass_valid_seconds || "";
      } catch (e) { grey.querySelector(".error").textContent = e.message; }
    }
    onSubmit(grey, async function () {
      var body = { enabled: $("grey-enabled").checked };
      [["delay_seconds", "grey-delay"], ["expiry_seconds", "grey-expiry"], ["pass_valid_seconds", "grey-pass"]].forEach(function (f) {
        body[f[0]] = parseInt($(f[1]).value || "0", 10) || 0;
      });
      await api("PATCH", "/api/filter/greylist", body);
      await loadGrey();
    });
    onSubmit($("dnsbl-form"), async function () {
      var sc = $("dnsbl-score").value;
      await api("POST", "/api/filter/dnsbl", { zone: $("dnsbl-zone").value.trim(), kind: $("dnsbl-kind").value, score: sc === "" ? 0 : parseFloat(sc) });
      $("dnsbl-form").reset();
      window.tandem.reload("dnsbl");
    });
    loadPolicies(); loadLists(); loadGrey();
  }

  // ---- Domain settings (domains page): gateway, DKIM, signature ----
  function domainDetail() {
    var pick = $("detail-domain"), dk = $("domain-dkim"), gw = $("gateway-form");
    var status = $("domain-detail-status");
    function domain() { return pick.value; }
    function say(e) { status.textContent = e ? e.message : ""; status.className = "error"; }
    async function loadDomains() {
      var ds;
      try { ds = await api("GET", "/api/domains"); } catch (e) { say(e); return; }
      var cur = pick.value;
      pick.replaceChildren();
      ds.forEach(function (d) { var o = document.createElement("option"); o.textContent = d.name; pick.appendChild(o); });
      if (cur) pick.value = cur;
      load();
    }
    async function load() {
      clear(dk); gw.reset(); say(null);
      gw.querySelector(".error").textContent = ""; $("gw-state").textContent = "";
      if (!domain()) return;
      try {
        var g = await api("GET", "/api/domains/" + enc(domain()) + "/gateway");
        $("gw-backends").value = (g.backends || []).join(", "); $("gw-verify").value = g.verify || "callout";
        $("gw-recipients").value = (g.recipients || []).join("\n");
      } catch (e) { $("gw-state").textContent = gw.dataset.off; }
      loadDKIM();
      try {
        var sig = await api("GET", "/api/signature");
        $("sig-enabled").checked = sig.some(function (s) { return s.domain === domain(); });
      } catch (e) { say(e); }
    }
    function showDKIM(keys) {
      clear(dk);
      keys.forEach(function (k) {
        var btns = k.state === "active" || k.state === "retired" ? [] : [{ label: dk.dataset.labelActivate, run: async function () {
          await api("POST", "/api/dkim/" + enc(domain()) + "/activate/" + enc(k.selector)); await loadDKIM();
        } }];
        row(dk, [k.selector, k.algorithm, k.state, k.dns_name + " TXT " + k.public_txt], btns);
      });
      empty(dk, keys.length);
    }
    async function loadDKIM() {
      try { showDKIM(await api("GET", "/api/dkim/" + enc(domain()))); } catch (e) { say(e); }
    }
    $("dkim-rotate").addEventListener("click", async function () {
      try { await api("POST", "/api/dkim/" + enc(domain()) + "/rotate"); say(null); await loadDKIM(); } catch (e) { say(e); }
    });
    $("sig-enabled").addEventListener("change", async function () {
      var box = this;
      try { await api("PUT", "/api/domains/" + enc(domain()) + "/signature", { enabled: box.checked }); say(null); }
      catch (e) { box.checked = !box.checked; say(e); }
    });
    onSubmit(gw, async function () {
      var split = function (v) { return v.split(/[\s,]+/).filter(Boolean); };
      await api("PUT", "/api/domains/" + enc(domain()) + "/gateway", { backends: split($("gw-backends").value),
        verify: $("gw-verify").value, recipients: split($("gw-recipients").value) });
      $("gw-state").textContent = ""; status.textContent = gw.dataset.saved; status.className = "ok";
    });
    $("gw-remove").addEventListener("click", async function () {
      try { await api("DELETE", "/api/domains/" + enc(domain()) + "/gateway"); load(); } catch (e) { say(e); }
    });
    pick.addEventListener("change", load);
    // A domain added above shows up here too.
    var addForm = document.querySelector('form[data-api="POST /api/domains"]');
    if (addForm) addForm.addEventListener("submit", function () { setTimeout(loadDomains, 500); });
    loadDomains();
  }

  // ---- Quarantine actions (security page) ----
  function quarantine() {
    var t = $("quarantine");
    async function load() {
      clear(t);
      var items;
      try { items = await api("GET", "/api/quarantine"); } catch (e) { fail(t, e); return; }
      items.forEach(function (q) {
        var act = function (what) { return async function () { await api("POST", "/api/quarantine/" + what, { ids: [q.id] }); load(); }; };
        row(t, [q.address, q.from, q.subject, typeof q.score === "number" ? q.score.toFixed(1) : q.score, q.reason], [
          { label: t.dataset.labelRelease, run: act("release") },
          { label: t.dataset.labelDelete, danger: true, confirm: t.dataset.confirm, run: act("delete") }]);
      });
      empty(t, items.length);
    }
    load();
  }

  document.addEventListener("DOMContentLoaded", function () {
    if ($("dns-records")) dnsPage();
    if ($("policies")) filtersPage();
    if ($("domain-detail")) domainDetail();
    if ($("quarantine") && !$("quarantine").dataset.src) quarantine();
  });
})();

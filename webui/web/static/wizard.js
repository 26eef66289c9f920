// Setup wizard (SPEC M1; webui/web/templates/wizard.html): step 1 the
// box's addresses with confirm-or-roll-back, step 2 the mail domains, step
// 3 the accounts (the import form is app.js's). API text is written with
// textContent only.
(function () {
  "use strict";
  var root = document.getElementById("wizard");
  if (!root) return;
  var api = function (m, p, b) { return window.tandem.api(m, p, b); };
  var $ = function (sel) { return document.getElementById(sel); };
  var msg = function (k) { return root.dataset["msg" + k] || k; };
  var steps = Array.prototype.slice.call(root.querySelectorAll("[data-step]"));

  function show(n) {
    steps.forEach(function (s) { s.hidden = s.dataset.step !== String(n); });
    root.querySelectorAll("[data-stepnav]").forEach(function (li) {
      var cur = li.dataset.stepnav === String(n);
      li.classList.toggle("current", cur);
      if (cur) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    });
    var h = root.querySelector('[data-step="' + n + '"] h2');
    if (h) { h.tabIndex = -1; h.focus(); }
    if (history.replaceState) history.replaceState(null, "", "#step" + n);
  }
  function status(text, bad) { var el = $("net-status"); el.textContent = text; el.classList.toggle("error", !!bad); }

  // ---- step 1: addresses ----
  var ifaces = [], timer = null;
  async function loadInterfaces() {
    try {
      var d = await api("GET", "/api/network/interfaces");
      var cur = $("net-current"), sel = $("net-iface"), keep = sel.value;
      cur.replaceChildren(); sel.replaceChildren();
      ifaces = d.interfaces;
      d.interfaces.forEach(function (i) {
        var li = document.createElement("li");
        li.textContent = i.name + ": " + (i.addrs.map(function (a) { return a.cidr; }).join(", ") || "–") +
          (i.gateway4 ? " · " + i.gateway4 : "") + (i.gateway6 ? " · " + i.gateway6 : "");
        cur.appendChild(li);
        if ((i.flags || []).indexOf("loopback") >= 0) return;
        var o = document.createElement("option");
        o.value = i.name; o.textContent = i.name;
        sel.appendChild(o);
      });
      // Preselect the interface that carries the box's addresses.
      var main = d.interfaces.find(function (i) { return (i.flags || []).indexOf("loopback") < 0 && (i.gateway4 || i.gateway6); }) ||
        d.interfaces.find(function (i) { return (i.flags || []).indexOf("loopback") < 0 && i.addrs.some(function (a) { return a.managed; }); });
      if (keep) sel.value = keep; else if (main) sel.value = main.name;
      fill();
      if (d.pending) countdown(d.pending);
    } catch (e) { status(e.message, true); }
  }
  function fill() {
    var i = ifaces.find(function (x) { return x.name === $("net-iface").value; });
    if (!i) return;
    $("net-addrs").value = i.addrs.filter(function (a) { return a.managed; }).map(function (a) { return a.cidr; }).join("\n");
    $("net-gw4").value = i.gateway4 || "";
    $("net-gw6").value = i.gateway6 || "";
  }
  function countdown(p) {
    $("net-pending").hidden = false;
    $("net-confirm").dataset.id = p.id;
    $("net-undo").dataset.id = p.id;
    var deadline = new Date(p.deadline).getTime();
    clearInterval(timer);
    var tick = function () {
      var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      $("net-countdown").textContent = String(left);
      if (left === 0) {
        clearInterval(timer); $("net-pending").hidden = true;
        status(msg("Rolledback"), true);
        setTimeout(loadInterfaces, 1500);
      }
    };
    tick();
    timer = setInterval(tick, 1000);
  }
  async function finishChange(verb) {
    var id = $("net-confirm").dataset.id;
    try {
      await api("POST", "/api/network/" + verb + "/" + encodeURIComponent(id));
      clearInterval(timer); $("net-pending").hidden = true;
      status(msg(verb === "confirm" ? "Confirmed" : "Rolledback"), verb !== "confirm");
      loadInterfaces();
    } catch (e) { status(e.message, true); }
  }
  $("net-iface").addEventListener("change", fill);
  $("net-form").addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var body = { interface: $("net-iface").value, addrs: $("net-addrs").value.split(/[\s,]+/).filter(Boolean),
      gateway4: $("net-gw4").value.trim(), gateway6: $("net-gw6").value.trim() };
    try {
      var p = await api("POST", "/api/network/apply", body);
      status(msg("Applied"));
      countdown(p);
    } catch (e) {
      // fetch rejects with a TypeError when the connection drops, as it
      // does when the address this page was loaded from goes away.
      status(e instanceof TypeError ? msg("Lost") : e.message, true);
    }
  });
  $("net-confirm").addEventListener("click", function () { finishChange("confirm"); });
  $("net-undo").addEventListener("click", function () { finishChange("rollback"); });
  $("net-keep").addEventListener("click", function () { show(2); });
  $("net-next").addEventListener("click", function () { show(2); });

  // ---- steps 2 and 3 (tables and forms are app.js's) ----
  $("dom-back").addEventListener("click", function () { show(1); });
  $("dom-next").addEventListener("click", function () { show(3); });
  $("acct-back").addEventListener("click", function () { show(2); });
  $("wiz-finish").addEventListener("click", async function () {
    try {
      await api("PUT", "/api/setup", { done: true });
      location.href = root.dataset.doneUrl || "/";
    } catch (e) { $("wiz-status").textContent = e.message; }
  });

  var m = /^#step([123])$/.exec(location.hash);
  show(m ? +m[1] : 1);
  loadInterfaces();
})();

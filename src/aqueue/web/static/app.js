// aqueue dashboard: confirmations before actions, and live updates by short polling
// (the page is fetched again and its [data-live] sections swapped), paused while the
// tab is hidden. No dependency, no build step.
(function () {
  "use strict";

  // Confirmation: a form or a submit button with data-confirm asks first.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var button = ev.submitter;
    var text = (button && button.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (!text) return;
    if (button && button.form && button.form.id === "bulk-form" && button.value.endsWith(":selected")) {
      var n = document.querySelectorAll('input[name="ids"][form="bulk-form"]:checked').length;
      if (n === 0) { ev.preventDefault(); window.alert("Select at least one job."); return; }
      text = text + " (" + n + " selected)";
    }
    if (!window.confirm(text)) ev.preventDefault();
  });

  // "Select all" on the failed jobs page.
  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.id === "select-all") {
      document.querySelectorAll('input[name="ids"]').forEach(function (box) {
        box.checked = ev.target.checked;
      });
    }
  });

  var sections = document.querySelectorAll("[data-live]");
  if (!sections.length) return;
  var PERIOD_MS = 3000;
  var timer = null;
  var badge = document.getElementById("live-state");

  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Aqueue-Poll": "1" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        sections.forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          // The server escaped everything in this HTML; it replaces our own section.
          if (fresh) el.replaceChildren.apply(el, Array.from(fresh.childNodes));
        });
        if (badge) { badge.hidden = false; badge.classList.remove("stale"); }
      })
      .catch(function () { if (badge) badge.classList.add("stale"); });
  }

  // data-polling on <body> says whether the page polls (tests and curious people read it)
  function start() {
    if (timer === null) timer = window.setInterval(refresh, PERIOD_MS);
    document.body.dataset.polling = "on";
  }
  function stop() {
    if (timer !== null) { window.clearInterval(timer); timer = null; }
    document.body.dataset.polling = "off";
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else { refresh(); start(); }
  });
  if (document.hidden) { stop(); } else { start(); }
  if (badge) badge.hidden = false;
})();

/* Calibration page: start a run (POST with CSRF) and poll its JSON status for progress and log. */
(function () {
  "use strict";
  var form = document.getElementById("calibrate-form");
  var box = document.getElementById("run-box");
  function el(id) { return document.getElementById(id); }
  function ensureBox() {
    if (el("run-state")) return;
    box.innerHTML = '<p>Run #<span id="run-id"></span>: <span class="badge" id="run-state"></span> ' +
      '<span class="progress"><div id="run-bar"></div></span></p><pre class="runlog" id="run-log"></pre>';
  }
  function show(run) {
    ensureBox(); box.hidden = false;
    el("run-id").textContent = run.id;
    el("run-state").textContent = run.state; el("run-state").className = "badge " + run.state;
    el("run-bar").style.width = Math.round(run.progress * 100) + "%";
    el("run-log").textContent = run.log;
  }
  function poll(url) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (run) {
        show(run);
        if (run.state === "queued" || run.state === "running") setTimeout(function () { poll(url); }, 1500);
        else if (run.state === "succeeded") setTimeout(function () { window.location.reload(); }, 1200);
      })
      .catch(function () { setTimeout(function () { poll(url); }, 4000); });
  }
  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var btn = el("calibrate-button"); btn.disabled = true;
      fetch(form.action, {
        method: "POST", credentials: "same-origin", body: new FormData(form),
        headers: { "Accept": "application/json", "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value }
      }).then(function (r) { return r.json(); })
        .then(function (data) {
          if (data.error) { alert(data.error); return; }
          show({ id: data.run, state: "queued", progress: 0, log: "" }); poll(data.status_url);
        })
        .catch(function (e) { alert("Could not start the calibration: " + e); })
        .finally(function () { btn.disabled = false; });
    });
  }
  var current = el("run-status-url");
  if (current && (current.dataset.state === "queued" || current.dataset.state === "running")) poll(current.dataset.url);
})();

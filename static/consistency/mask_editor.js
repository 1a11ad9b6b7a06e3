/* Mask correction: brush (add/erase, size slider) and polygon tool over the image; saves a
   black/white PNG (white = product) at the image's own resolution as a data URL. No build step. */
(function () {
  "use strict";
  var root = document.getElementById("mask-editor");
  if (!root) return;
  var W = parseInt(root.dataset.width, 10), H = parseInt(root.dataset.height, 10);
  var img = document.getElementById("me-image");
  var mask = document.getElementById("me-mask"), guide = document.getElementById("me-guide");
  var mctx = mask.getContext("2d"), gctx = guide.getContext("2d");
  var status = document.getElementById("me-status");
  var COLOUR = "rgb(0, 220, 140)";
  var tool = "brush", drawing = false, last = null, poly = [], undo = [], dirty = false;

  function csrf() {
    var input = root.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }
  function say(text, kind) { status.textContent = text; status.className = kind || ""; }
  function mode() { return root.querySelector("input[name=mode]:checked").value; }
  function size() { return parseInt(document.getElementById("me-size").value, 10); }

  function layout() {
    if (!W || !H) { W = img.naturalWidth; H = img.naturalHeight; }
    var maxW = Math.min(900, window.innerWidth - 80), maxH = 640;
    var s = Math.min(maxW / W, maxH / H);
    if (s > 1) s = Math.min(s, 4);  // small product photos are shown larger
    var dw = Math.round(W * s), dh = Math.round(H * s);
    [img, mask, guide].forEach(function (el) { el.style.width = dw + "px"; el.style.height = dh + "px"; });
    mask.width = guide.width = W; mask.height = guide.height = H;
    mask.style.opacity = document.getElementById("me-opacity").value / 100;
  }

  function snapshot() {
    undo.push(mctx.getImageData(0, 0, W, H));
    if (undo.length > 25) undo.shift();
  }

  function loadMask(url) {
    mctx.clearRect(0, 0, W, H);
    if (!url) return Promise.resolve(false);
    return new Promise(function (resolve) {
      var m = new Image();
      m.onload = function () {
        var tmp = document.createElement("canvas"); tmp.width = W; tmp.height = H;
        var t = tmp.getContext("2d");
        t.drawImage(m, 0, 0, W, H);
        var src = t.getImageData(0, 0, W, H), out = mctx.createImageData(W, H);
        for (var i = 0; i < src.data.length; i += 4) {
          var on = (src.data[i] + src.data[i + 1] + src.data[i + 2]) / 3 >= 128 && src.data[i + 3] >= 128;
          out.data[i] = 0; out.data[i + 1] = 220; out.data[i + 2] = 140; out.data[i + 3] = on ? 255 : 0;
        }
        mctx.putImageData(out, 0, 0);
        resolve(true);
      };
      m.onerror = function () { say("The saved mask could not be loaded; start from an empty one.", "error"); resolve(false); };
      m.src = url + (url.indexOf("?") < 0 ? "?" : "&") + "t=" + Date.now();
    });
  }

  function point(ev) {
    var r = mask.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * W / r.width, y: (ev.clientY - r.top) * H / r.height };
  }
  function paintMode(ctx) {
    ctx.globalCompositeOperation = mode() === "erase" ? "destination-out" : "source-over";
    ctx.fillStyle = ctx.strokeStyle = COLOUR;
  }
  function stroke(a, b) {
    paintMode(mctx);
    mctx.lineWidth = size(); mctx.lineCap = "round"; mctx.lineJoin = "round";
    mctx.beginPath(); mctx.moveTo(a.x, a.y); mctx.lineTo(b.x, b.y); mctx.stroke();
    mctx.beginPath(); mctx.arc(b.x, b.y, size() / 2, 0, Math.PI * 2); mctx.fill();
    dirty = true;
  }
  function drawGuide(cursor) {
    gctx.clearRect(0, 0, W, H);
    var lw = Math.max(1, W / 400);
    if (tool === "brush" && cursor) {
      gctx.strokeStyle = "#fff"; gctx.lineWidth = lw;
      gctx.beginPath(); gctx.arc(cursor.x, cursor.y, size() / 2, 0, Math.PI * 2); gctx.stroke();
    }
    if (tool === "polygon" && poly.length) {
      gctx.strokeStyle = mode() === "erase" ? "#00e5ff" : "#ffe600"; gctx.lineWidth = lw * 1.5;
      gctx.beginPath(); gctx.moveTo(poly[0].x, poly[0].y);
      poly.forEach(function (p) { gctx.lineTo(p.x, p.y); });
      if (cursor) gctx.lineTo(cursor.x, cursor.y);
      gctx.stroke();
      poly.forEach(function (p) { gctx.fillStyle = "#fff"; gctx.fillRect(p.x - 2 * lw, p.y - 2 * lw, 4 * lw, 4 * lw); });
    }
  }
  function closePolygon() {
    if (poly.length >= 3) {
      snapshot(); paintMode(mctx);
      mctx.beginPath(); mctx.moveTo(poly[0].x, poly[0].y);
      poly.forEach(function (p) { mctx.lineTo(p.x, p.y); });
      mctx.closePath(); mctx.fill(); dirty = true;
    }
    poly = []; drawGuide(null);
  }

  guide.addEventListener("pointerdown", function (ev) {
    ev.preventDefault();
    var p = point(ev);
    if (tool === "brush") {
      snapshot(); drawing = true; last = p; stroke(p, p);
      guide.setPointerCapture(ev.pointerId);
    } else {
      if (ev.detail >= 2) { closePolygon(); return; }
      poly.push(p); drawGuide(p);
    }
  });
  guide.addEventListener("pointermove", function (ev) {
    var p = point(ev);
    if (drawing) { stroke(last, p); last = p; }
    drawGuide(p);
  });
  function stop() { drawing = false; last = null; }
  guide.addEventListener("pointerup", stop);
  guide.addEventListener("pointercancel", stop);
  guide.addEventListener("pointerleave", function () { if (!drawing) drawGuide(null); });
  guide.addEventListener("dblclick", function (ev) { ev.preventDefault(); if (tool === "polygon") closePolygon(); });
  document.addEventListener("keydown", function (ev) {
    if (tool !== "polygon") return;
    if (ev.key === "Enter") closePolygon();
    if (ev.key === "Escape") { poly = []; drawGuide(null); }
  });

  root.querySelectorAll("button.tool").forEach(function (b) {
    b.addEventListener("click", function () {
      tool = b.dataset.tool; poly = []; drawGuide(null);
      root.querySelectorAll("button.tool").forEach(function (o) { o.classList.toggle("active", o === b); });
    });
  });
  document.getElementById("me-size").addEventListener("input", function (ev) {
    document.getElementById("me-size-value").textContent = ev.target.value;
  });
  document.getElementById("me-opacity").addEventListener("input", function (ev) {
    mask.style.opacity = ev.target.value / 100;
  });
  document.getElementById("me-undo").addEventListener("click", function () {
    if (undo.length) { mctx.putImageData(undo.pop(), 0, 0); dirty = true; }
  });
  document.getElementById("me-clear").addEventListener("click", function () {
    snapshot(); mctx.clearRect(0, 0, W, H); dirty = true;
  });
  document.getElementById("me-reset").addEventListener("click", function () {
    snapshot(); loadMask(root.dataset.maskUrl).then(function () { dirty = false; say("Saved mask reloaded."); });
  });

  function exportPng() {
    var out = document.createElement("canvas"); out.width = W; out.height = H;
    var o = out.getContext("2d");
    var src = mctx.getImageData(0, 0, W, H), dst = o.createImageData(W, H);
    for (var i = 0; i < src.data.length; i += 4) {
      var v = src.data[i + 3] >= 128 ? 255 : 0;
      dst.data[i] = dst.data[i + 1] = dst.data[i + 2] = v; dst.data[i + 3] = 255;
    }
    o.putImageData(dst, 0, 0);
    return out.toDataURL("image/png");
  }

  document.getElementById("me-save").addEventListener("click", function () {
    var btn = this; btn.disabled = true; say("Saving…");
    fetch(root.dataset.saveUrl, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), "Accept": "application/json" },
      body: JSON.stringify({ mask: exportPng() })
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, error: "HTTP " + r.status }; });
    }).then(function (data) {
      if (data.ok) { root.dataset.maskUrl = data.mask_url; dirty = false; say(data.message, "ok"); }
      else say("Not saved: " + data.error, "error");
    }).catch(function (e) { say("Not saved: " + e, "error"); })
      .finally(function () { btn.disabled = false; });
  });
  window.addEventListener("beforeunload", function (ev) { if (dirty) { ev.preventDefault(); ev.returnValue = ""; } });

  function start() { layout(); loadMask(root.dataset.maskUrl); }
  if (img.complete && img.naturalWidth) start(); else img.addEventListener("load", start);
  window.addEventListener("resize", function () {
    var saved = mctx.getImageData(0, 0, W, H); layout(); mctx.putImageData(saved, 0, 0);
  });
})();

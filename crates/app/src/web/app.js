// Patient Explorer: the little JavaScript it needs (no framework, no network but this app).
(function () {
  "use strict";
  // Auto-lock countdown: the server locks after inactivity; this shows a warning a minute
  // before and goes to the lock screen when time is up. Polling /session does not count as
  // activity.
  var warn = document.getElementById("lockwarn");
  var left = document.getElementById("lockleft");
  if (warn && document.body.dataset.idle) {
    var deadline = Date.now() + Number(document.body.dataset.secondsLeft) * 1000;
    var tick = function () {
      var s = Math.round((deadline - Date.now()) / 1000);
      if (s <= 0) { window.location.href = "/locked"; return; }
      if (s <= 60) { warn.classList.add("show"); left.textContent = String(s); }
      setTimeout(tick, 1000);
    };
    setTimeout(tick, 1000);
    var stay = document.getElementById("staybutton");
    if (stay) stay.addEventListener("click", function () {
      fetch("/keepalive", { method: "POST", headers: { "X-Requested-With": "hearth" } }).then(function (r) {
        return r.json();
      }).then(function (j) {
        deadline = Date.now() + j.seconds_left * 1000; warn.classList.remove("show");
      });
    });
  }
  // Signature pad: draw with finger, pen or mouse; the PNG goes in a hidden field.
  var pad = document.getElementById("sigpad");
  if (pad) {
    var ctx = pad.getContext("2d");
    var field = document.getElementById("signature");
    var drawing = false, drawn = false;
    var size = function () { var r = pad.getBoundingClientRect(); pad.width = r.width; pad.height = r.height; ctx.lineWidth = 2.5; ctx.lineCap = "round"; ctx.strokeStyle = "#111"; };
    size();
    var at = function (e) { var r = pad.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    pad.addEventListener("pointerdown", function (e) { drawing = true; pad.setPointerCapture(e.pointerId); var p = at(e); ctx.beginPath(); ctx.moveTo(p[0], p[1]); });
    pad.addEventListener("pointermove", function (e) { if (!drawing) return; var p = at(e); ctx.lineTo(p[0], p[1]); ctx.stroke(); drawn = true; });
    var end = function () { if (drawing && drawn) field.value = pad.toDataURL("image/png"); drawing = false; };
    pad.addEventListener("pointerup", end);
    pad.addEventListener("pointercancel", end);
    var clear = document.getElementById("sigclear");
    if (clear) clear.addEventListener("click", function () { ctx.clearRect(0, 0, pad.width, pad.height); field.value = ""; drawn = false; });
  }
})();
// Live sync progress: while a "sync now" runs, poll its counts and show them; reload when done.
(function () {
  "use strict";
  var box = document.getElementById("sync-result");
  if (!box || box.dataset.running !== "true") return;
  var poll = function () {
    fetch("/sync/progress").then(function (r) { return r.json(); }).then(function (j) {
      if (!j.running) { window.location.reload(); return; }
      box.textContent = "Syncing (" + j.phase + "): " + j.sent + " sent, " + j.received + " received, " + j.refused + " refused.";
      setTimeout(poll, 500);
    }).catch(function () { setTimeout(poll, 1000); });
  };
  setTimeout(poll, 500);
})();

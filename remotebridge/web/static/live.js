// Progressive enhancement: every few seconds fetch the page's live fragment
// (?partial=1) and swap it in, so a state change shows without a reload.
// Without JavaScript the page is complete; the "refresh" link reloads it.
(function () {
  "use strict";
  function start() {
    var live = document.getElementById("live");
    var status = document.getElementById("live-status");
    if (!live || !live.dataset.partial) { return; }
    var every = parseInt(live.dataset.every, 10) || 4000;
    var busy = false;
    function tick() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(live.dataset.partial, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          // the fragment is rendered (and escaped) by the server's templates
          live.innerHTML = html;
          if (status) { status.textContent = "· live, updated " + new Date().toLocaleTimeString(); }
        })
        .catch(function (e) {
          if (status) { status.textContent = "· not updating: " + e.message; }
        })
        .finally(function () { busy = false; });
    }
    setInterval(tick, every);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());

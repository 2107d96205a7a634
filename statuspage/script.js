(function () {
  "use strict";
  var every = (Number(document.body.getAttribute("data-refresh")) || 5) * 1000;
  var conn = document.getElementById("conn");
  var failedSince = null;
  function fail(why) {
    if (!failedSince) failedSince = new Date();
    conn.textContent = "understudy has not answered since " + failedSince.toLocaleTimeString() +
      " (" + why + "): what is shown below is out of date.";
    conn.hidden = false;
    document.body.classList.add("stale");
  }
  function tick() {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, 2 * every);
    fetch(location.pathname, { cache: "no-store", signal: ctl.signal })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("page");
        if (!fresh) throw new Error("not a status page");
        document.getElementById("page").replaceWith(document.adoptNode(fresh));
        document.title = doc.title;
        var icon = doc.querySelector("link[rel=icon]"), mine = document.querySelector("link[rel=icon]");
        if (icon && mine) mine.setAttribute("href", icon.getAttribute("href"));
        failedSince = null;
        conn.hidden = true;
        document.body.classList.remove("stale");
      })
      .catch(function (e) {
        fail(e && e.name === "AbortError" ? "no answer in " + 2 * every / 1000 + " s" : e && e.message ? e.message : String(e));
      })
      .then(function () { clearTimeout(timer); setTimeout(tick, every); });
  }
  setTimeout(tick, every);
})();

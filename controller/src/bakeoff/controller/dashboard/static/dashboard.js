// The dashboard page: replaces #live with the fragment the server sends by server-sent events,
// keeps the open <details> open, and sends approve/abort as the page's user.
(function () {
  "use strict";
  var me = document.currentScript;
  var key = me.getAttribute("data-key");
  var live = document.getElementById("live");
  var notice = document.getElementById("notice");
  function say(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }
  function openDetails() {
    var out = [];
    live.querySelectorAll("details").forEach(function (d, i) { if (d.open) out.push(i); });
    return out;
  }
  var source = new EventSource(me.getAttribute("data-stream") + "?key=" + encodeURIComponent(key));
  source.addEventListener("update", function (ev) {
    var data = JSON.parse(ev.data);
    var open = openDetails();
    live.innerHTML = data.html;
    var ds = live.querySelectorAll("details");
    open.forEach(function (i) { if (ds[i]) ds[i].open = true; });
    live.setAttribute("data-updated", String(Date.now()));
    live.setAttribute("data-sent", String(data.at));
    var approve = document.getElementById("approve");
    var abort = document.getElementById("abort");
    if (approve && data.waiting !== undefined) {
      approve.hidden = !data.can_approve;
      approve.setAttribute("data-variant", data.waiting[0] || "");
      approve.textContent = "Approve " + (data.waiting[0] || "");
      abort.hidden = !data.can_abort;
      document.getElementById("actions").hidden = approve.hidden && abort.hidden;
    }
    if (notice.getAttribute("data-kind") === "problem") say("");
  });
  source.addEventListener("gone", function (ev) {
    say(JSON.parse(ev.data).message);
    notice.setAttribute("data-kind", "gone");
    var actions = document.getElementById("actions");
    if (actions) actions.hidden = true;
  });
  source.addEventListener("problem", function (ev) {
    say(JSON.parse(ev.data).message);
    notice.setAttribute("data-kind", "problem");
  });
  function act(what, body) {
    fetch("/b/" + encodeURIComponent(key) + "/" + what, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Bakeoff-Dashboard": "1" },
      body: JSON.stringify(body),
    }).then(function (r) { return r.json(); }).then(function (res) {
      say(res.message);
      notice.setAttribute("data-kind", res.ok ? "done" : "refused");
    }, function (err) { say(what + " failed: " + err); });
  }
  var approve = document.getElementById("approve");
  if (approve) approve.addEventListener("click", function () {
    act("approve", { variant: approve.getAttribute("data-variant") });
  });
  var abort = document.getElementById("abort");
  if (abort) abort.addEventListener("click", function () {
    if (window.confirm("Stop this bake-off without a winner?")) act("abort", { reason: "aborted from the dashboard" });
  });
})();

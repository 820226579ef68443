// Keeps the session widget fresh without eval (the CSP forbids it): asks htmx to refetch
// /session every data-poll-seconds while the tab is visible, and at once when it becomes visible.
(function () {
  "use strict";

  function widget() {
    return document.getElementById("session-widget");
  }

  function refresh() {
    var element = widget();
    if (element && window.htmx) {
      window.htmx.trigger(element, "session:refresh");
    }
  }

  function start() {
    var element = widget();
    if (!element) {
      return;
    }
    var seconds = Number(element.getAttribute("data-poll-seconds")) || 5;
    window.setInterval(function () {
      if (document.visibilityState === "visible") {
        refresh();
      }
    }, seconds * 1000);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") {
        refresh();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

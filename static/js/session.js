// The session widget's client side, next-auth's SessionProvider in a few lines, without eval
// (the CSP forbids it). It asks htmx to refetch /session ("session:refresh"):
//   - every data-poll-seconds while the tab is visible and online;
//   - at once when the tab becomes visible, regains focus or comes back online;
//   - when another tab of this browser says its session changed (BroadcastChannel, or
//     `storage` events where that is missing). The message is only a nudge: this tab asks the
//     server for the truth.
// Each request carries the state the widget shows (X-Session-State), so an unchanged session
// is answered 204 and nothing is swapped. When the widget goes from signed in to signed out it
// says why: expired, signed out in another tab, or ended from another device.
// It also shows times the same way everywhere (<time data-relative>: "5 minutes ago", the exact
// local time on hover and focus; the expiry warning's live countdown), sends a page whose
// session ended to the sign-in page with the reason (?reason=), and keeps focus sensible
// after htmx swaps.
// It also keeps the page's <meta name="csrf-token"> (what scripts POST with) current: hx-boost
// swaps only the body, and each sign-in or sign-out, here or in another tab, changes the token.
(function () {
  "use strict";

  var STATE_KEY = "webapp.session.state";
  var PING_KEY = "webapp.session.ping";
  var HINT_SECONDS = 10;
  var REASONS = {
    expired: "Your session expired.",
    signout: "You signed out in another tab.",
    revoked: "This session was ended from another device."
  };
  var LOGIN_PATH = "/login";

  var channel = "BroadcastChannel" in window ? new BroadcastChannel("webapp-session") : null;
  var shown = null; // {status, token} last shown in this tab
  var deadline = null; // Date.now() value at which the shown session ends
  var guarded = new WeakSet(); // widget elements whose answers go through dropIfStale
  var hint = null; // {cause, at}: what another tab said happened
  var SIGN_OUT_SECONDS = 10;
  var signOutAt = null; // Date.now() when this tab submitted a sign-out still unanswered

  function signingOut() {
    return signOutAt !== null && Date.now() - signOutAt < SIGN_OUT_SECONDS * 1000;
  }

  function widget() {
    return document.getElementById("session-widget");
  }

  function refresh() {
    var element = widget();
    if (element && window.htmx && navigator.onLine !== false && !signingOut()) {
      window.htmx.trigger(element, "session:refresh");
    }
  }

  function storage(action, key, value) {
    try {
      return action === "get" ? window.localStorage.getItem(key)
        : window.localStorage.setItem(key, value);
    } catch (error) {
      return null; // storage disabled: cross-tab sync falls back to polling
    }
  }

  function announce(cause) {
    var message = {cause: cause, at: Date.now(), nonce: Math.random()};
    if (channel) {
      channel.postMessage(message);
    } else {
      storage("set", PING_KEY, JSON.stringify(message)); // fires `storage` in the other tabs
    }
  }

  function heard(message) {
    if (!message || !message.cause) {
      return;
    }
    if (message.cause === "signout") { // a later "changed" from that tab must not erase it
      hint = {cause: "signout", at: Date.now()};
    }
    refresh();
    if (message.cause === "signout") {
      // the other tab announced before the server ended the session: look again shortly
      window.setTimeout(refresh, 300);
      window.setTimeout(refresh, 1000);
    }
  }

  // Which of REASONS ended the session this tab showed (the sign-in page knows the same keys).
  function reasonForEnd() {
    if (hint && hint.cause === "signout" && Date.now() - hint.at < HINT_SECONDS * 1000) {
      return "signout";
    }
    if (deadline !== null && Date.now() >= deadline - 1500) {
      return "expired";
    }
    return "revoked";
  }

  var relative = window.Intl && Intl.RelativeTimeFormat ?
    new Intl.RelativeTimeFormat(document.documentElement.lang || "en", {numeric: "auto"}) : null;
  var UNITS = [["day", 86400], ["hour", 3600], ["minute", 60]];

  function relativeText(seconds) { // seconds: from now, negative for the past
    if (Math.abs(seconds) < 45) {
      return seconds < 0 ? "just now" : "in a moment";
    }
    for (var i = 0; i < UNITS.length; i++) {
      if (Math.abs(seconds) >= UNITS[i][1] || i === UNITS.length - 1) {
        return relative.format(Math.round(seconds / UNITS[i][1]), UNITS[i][0]);
      }
    }
    return "";
  }

  function countdownText(seconds) {
    var left = Math.max(0, Math.ceil(seconds));
    var rest = left % 60;
    return left === 0 ? "now" : "in " + Math.floor(left / 60) + ":" + (rest < 10 ? "0" : "") + rest;
  }

  // <time data-relative>: relative text, exact local time in title and data-exact (app.css
  // shows it on hover and focus); [data-countdown]: the warning's "in 1:45".
  function showTimes(root) {
    var now = Date.now();
    var times = (root || document).querySelectorAll("time[data-relative]");
    for (var i = 0; i < times.length && relative; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when)) {
        var exact = when.toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
        times[i].textContent = relativeText((when - now) / 1000);
        times[i].setAttribute("title", exact);
        times[i].setAttribute("data-exact", exact);
      }
    }
    var countdowns = (root || document).querySelectorAll("[data-countdown]");
    for (var j = 0; j < countdowns.length; j++) {
      var end = new Date(countdowns[j].getAttribute("data-countdown"));
      if (!isNaN(end)) {
        countdowns[j].textContent = countdownText((end - now) / 1000);
      }
    }
  }

  function showLocalTimes(element) {
    var times = element.querySelectorAll("time[data-local-time]");
    for (var i = 0; i < times.length; i++) {
      var when = new Date(times[i].getAttribute("datetime"));
      if (!isNaN(when)) {
        times[i].textContent = when.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
      }
    }
  }

  function setCsrfMeta(token) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta && token) {
      meta.setAttribute("content", token);
    }
  }

  // A page fetched by a boosted link or form: its <head>, and so its token, is not swapped in.
  // Take the token from it.
  function adoptCsrfFrom(html) {
    if (typeof html !== "string" || html.indexOf("csrf-token") < 0) {
      return;
    }
    var page = new DOMParser().parseFromString(html, "text/html");
    var meta = page.querySelector('meta[name="csrf-token"]');
    setCsrfMeta(meta && meta.getAttribute("content"));
  }

  // The widget shows the session's token when signed in. When the session it showed ended
  // elsewhere (another tab, expiry, another device), ask the server for the new one; this
  // tab's own sign-out brought its token with the page it loaded (adoptCsrfFrom).
  function followCsrf(element, endedElsewhere) {
    var input = element.querySelector('form[data-session-signout] input[name="csrf_token"]');
    if (input) {
      setCsrfMeta(input.value);
    } else if (endedElsewhere && window.fetch && element.getAttribute("data-csrf-url")) {
      window.fetch(element.getAttribute("data-csrf-url"), {credentials: "same-origin"})
        .then(function (response) { return response.ok ? response.json() : {}; })
        .then(function (body) { setCsrfMeta(body.csrfToken); })
        .catch(function () {}); // offline: the next sign-in or page load brings a token
    }
  }

  // After every render of the widget: say why a session ended, remember when it ends, and
  // tell the other tabs when what this tab shows changed.
  function observe() {
    var element = widget();
    if (!element || element.getAttribute("data-session-status") === "loading") {
      return;
    }
    var status = element.getAttribute("data-session-status");
    var token = element.getAttribute("data-state");
    var endedElsewhere = shown !== null && shown.status === "authenticated" &&
      status === "unauthenticated" && !signingOut();
    if (endedElsewhere) {
      var reason = element.querySelector(".session-reason");
      if (reason) {
        reason.textContent = REASONS[reasonForEnd()];
      }
    }
    if (status === "unauthenticated") {
      signOutAt = null;
    }
    var expiresIn = element.getAttribute("data-expires-in");
    deadline = expiresIn === null ? null : Date.now() + Number(expiresIn) * 1000;
    showLocalTimes(element);
    showTimes(element);
    followCsrf(element, endedElsewhere);
    shown = {status: status, token: token};
    if (token && storage("get", STATE_KEY) !== token) {
      storage("set", STATE_KEY, token);
      announce("changed");
    }
  }

  function isWidgetRequest(detail) {
    return detail.elt && detail.elt.id === "session-widget";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    if (!isWidgetRequest(event.detail)) {
      return;
    }
    var element = event.detail.elt;
    event.detail.headers["X-Session-State"] = element.getAttribute("data-state") || "";
    if (document.querySelector("main[data-session-required]") && !signingOut()) {
      event.detail.headers["X-Session-Required"] = "true";
    }
    if (!guarded.has(element)) {
      guarded.add(element);
      element.addEventListener("htmx:beforeOnLoad", dropIfStale);
    }
  });

  // An answer for a widget that has left the page (hx-boost swapped the page while the poll
  // was on its way) or that was asked before this tab's sign-out went through is dropped: its
  // "session required" redirect to /login?next=<old page> must not win over the sign-out's own
  // answer. htmx fires this on the widget itself, which is why it is not a document listener.
  function dropIfStale(event) {
    var element = event.currentTarget;
    // (the sign-out form's own answer bubbles up through the widget: it is not a poll)
    if (event.target === element && (!element.isConnected || signingOut())) {
      event.preventDefault();
    }
  }

  // A page whose session ended is sent to the sign-in page (HX-Redirect): say why there, when
  // this tab knew it was signed in. The server cannot tell; only a fixed key is added.
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    var xhr = event.detail.xhr;
    var target = xhr && xhr.getResponseHeader("HX-Redirect");
    if (event.defaultPrevented || !target || shown === null || shown.status !== "authenticated" ||
        signingOut()) {
      return;
    }
    var url = new URL(target, window.location.href);
    if (url.origin === window.location.origin && url.pathname === LOGIN_PATH &&
        !url.searchParams.has("reason")) {
      event.preventDefault();
      url.searchParams.set("reason", reasonForEnd());
      window.location.assign(url.pathname + url.search);
    }
  });

  // Focus after swaps: a new page (boosted link or form) starts at its <main> unless a field
  // asks for focus; a widget swapped while focus was inside it gives focus to its new control.
  var focusInWidget = false;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var element = widget();
    focusInWidget = element !== null && event.detail.target === element &&
      element.contains(document.activeElement);
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    showTimes(document);
    var active = document.activeElement;
    if (event.detail.boosted && !(active && active.hasAttribute("autofocus"))) {
      var main = document.getElementById("main");
      var field = main && main.querySelector("[autofocus]");
      if (field || main) {
        (field || main).focus({preventScroll: !field});
      }
    } else if (focusInWidget && (!active || active === document.body)) {
      var controls = widget() ? widget().querySelectorAll("summary, button, a") : [];
      for (var i = 0; i < controls.length; i++) {
        if (controls[i].getClientRects().length > 0) { // the first one shown
          controls[i].focus();
          break;
        }
      }
    }
    focusInWidget = false;
  });

  // A failed poll (server restarting, network) must not swap an error page into the widget.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (isWidgetRequest(event.detail) && event.detail.xhr.status >= 400) {
      event.detail.shouldSwap = false;
    }
    if (event.detail.boosted && event.detail.shouldSwap) {
      adoptCsrfFrom(event.detail.serverResponse);
    }
  });

  document.addEventListener("htmx:afterSettle", observe);

  document.addEventListener("submit", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-session-signout")) {
      signOutAt = Date.now();
      announce("signout");
    }
  }, true);

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
    window.addEventListener("focus", refresh);
    window.setInterval(function () { showTimes(document); }, 1000);
    showTimes(document);
    window.addEventListener("online", refresh);
    if (channel) {
      channel.onmessage = function (event) {
        heard(event.data);
      };
    } else {
      window.addEventListener("storage", function (event) {
        if (event.key === PING_KEY && event.newValue) {
          heard(JSON.parse(event.newValue));
        }
      });
    }
    observe();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

// Session data shown outside the widget, kept current without a reload (issue 15):
//   - the basket's count in the header follows the widget's data-basket-count, which every
//     render of the widget brings (a poll, or another tab's nudge, whenever the count changed);
//   - a page loaded by a boosted link or form brings its <html data-theme>, which hx-boost
//     does not swap: take it, so a theme chosen in another tab shows on the next navigation.
(function () {
  "use strict";

  function followSessionData() {
    var widget = document.getElementById("session-widget");
    var count = document.getElementById("basket-count");
    if (widget && count && widget.hasAttribute("data-basket-count")) {
      count.textContent = widget.getAttribute("data-basket-count");
    }
  }

  function adoptTheme(event) {
    var html = event.detail.serverResponse;
    if (!event.detail.boosted || typeof html !== "string") {
      return;
    }
    var match = /<html[^>]*\sdata-theme="(light|dark|system)"/.exec(html);
    if (match) {
      document.documentElement.setAttribute("data-theme", match[1]);
    }
  }

  document.addEventListener("htmx:afterSettle", followSessionData);
  document.addEventListener("htmx:beforeSwap", adoptTheme);
})();

// Passkeys (WebAuthn) for the sign-in, re-authentication and security pages, without inline
// script. On a page with [data-passkey-sign-in] it offers the site's passkeys through the
// username field's autofill (conditional mediation) as soon as the page loads, and through its
// button; the button first aborts the autofill request (a browser runs one at a time). On the
// security page, [data-passkey-register] adds a passkey. The server's JSON routes hold the
// rules; this file only converts between JSON and the browser's ArrayBuffers (base64url).
(function () {
  "use strict";

  var autofill = null; // AbortController of the pending autofill request
  var buttonUsed = false; // the button's flow began on this page: no autofill after it

  function toBytes(value) {
    var base64 = value.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, function (c) { return c.charCodeAt(0); }).buffer;
  }

  function toBase64url(buffer) {
    var binary = String.fromCharCode.apply(null, new Uint8Array(buffer));
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // The session's token as the server has it now: right after a boosted sign-in or sign-out
  // the page's meta tag may not have been updated yet (session.js does it after the swap).
  function freshCsrfToken() {
    return fetch("/csrf", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.json(); })
      .then(function (body) { return body.csrfToken || csrfToken(); })
      .catch(function () { return csrfToken(); });
  }

  function post(url, body) {
    return freshCsrfToken().then(function (token) {
      return fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json",
                  "X-CSRFToken": token},
        body: JSON.stringify(body || {})
      });
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return {status: response.status, data: data};
      });
    });
  }

  function showError(root, message) {
    var box = root && root.querySelector("[data-passkey-error]");
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
  }

  function credentialJSON(credential) {
    var r = credential.response;
    var response = {clientDataJSON: toBase64url(r.clientDataJSON)};
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      response.userHandle = r.userHandle ? toBase64url(r.userHandle) : null;
    }
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || null
    };
  }

  function requestOptions(options) {
    options.challenge = toBytes(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
    return options;
  }

  function signIn(root, mediation, signal) {
    return post("/login/passkey/options").then(function (answer) {
      if (answer.status !== 200) {
        throw new Error(answer.data.message || "Passkeys are not available right now.");
      }
      var request = {publicKey: requestOptions(answer.data)};
      if (mediation) {
        request.mediation = mediation;
      }
      if (signal) {
        request.signal = signal;
      }
      return navigator.credentials.get(request);
    }).then(function (credential) {
      var next = root.getAttribute("data-next") || "";
      var url = "/login/passkey" + (next ? "?next=" + encodeURIComponent(next) : "");
      return post(url, credentialJSON(credential));
    }).then(function (answer) {
      if (answer.status !== 200) {
        throw new Error(answer.data.message || "That passkey did not work.");
      }
      window.location.assign(answer.data.url);
    });
  }

  function startAutofill(root) {
    var field = document.querySelector('input[name="username"]');
    if (!field || !window.PublicKeyCredential ||
        !PublicKeyCredential.isConditionalMediationAvailable) {
      return;
    }
    field.setAttribute("autocomplete", "username webauthn");
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available || !document.contains(root) || buttonUsed) {
        return;
      }
      var controller = new AbortController();
      autofill = controller;
      signIn(root, "conditional", controller.signal).catch(function (error) {
        // The browser's own refusals (nobody picked a passkey, none here) stay silent: the
        // visitor may be typing a password. The server's answers are shown.
        if (!controller.signal.aborted && !(error instanceof DOMException)) {
          showError(root, error.message);
        }
      });
    });
  }

  function stopAutofill() {
    if (autofill) {
      autofill.abort();
      autofill = null;
    }
  }

  function signInByButton(root) {
    buttonUsed = true; // an autofill starting now would race the button's own requests
    stopAutofill();
    signIn(root, null, null).catch(function (error) {
      showError(root, error.name === "NotAllowedError"
        ? "No passkey was used." : error.message);
    });
  }

  function register(root) {
    var nameField = root.querySelector("[data-passkey-name]");
    post("/account/passkeys/options").then(function (answer) {
      if (answer.status === 401 && answer.data.url) {
        window.location.assign(answer.data.url); // confirm it is you first
        return null;
      }
      if (answer.status !== 200) {
        throw new Error(answer.data.message || "Passkeys are not available right now.");
      }
      var options = answer.data;
      options.challenge = toBytes(options.challenge);
      options.user.id = toBytes(options.user.id);
      (options.excludeCredentials || []).forEach(function (c) { c.id = toBytes(c.id); });
      return navigator.credentials.create({publicKey: options});
    }).then(function (credential) {
      if (!credential) {
        return null;
      }
      var body = credentialJSON(credential);
      body.name = nameField ? nameField.value : "";
      return post("/account/passkeys", body);
    }).then(function (answer) {
      if (!answer) {
        return;
      }
      if (answer.status !== 201) {
        throw new Error(answer.data.message || "The passkey was not added.");
      }
      window.location.reload();
    }).catch(function (error) {
      showError(root, error.name === "NotAllowedError" ? "No passkey was made." : error.message);
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var login = target && target.closest("[data-passkey-login]");
    if (login) {
      signInByButton(login.closest("[data-passkey-sign-in]"));
      return;
    }
    var add = target && target.closest("[data-passkey-register]");
    if (add) {
      register(add.closest("[data-passkeys]"));
    }
  });

  // At load, and after each hx-boost page swap (which keeps this script running).
  function onPage() {
    stopAutofill();
    buttonUsed = false;
    var root = document.querySelector("[data-passkey-sign-in]");
    if (root && window.PublicKeyCredential) {
      startAutofill(root);
    }
  }

  document.addEventListener("DOMContentLoaded", onPage);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target === document.body) {
      onPage();
    }
  });
})();

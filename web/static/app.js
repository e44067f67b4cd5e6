// Custodia's one script: WebAuthn ceremonies and JSON form posts. No inline script, no
// framework. Errors arrive as RFC 9457 problem+json; their `detail` is shown to the user.
"use strict";

const b64u = {
  decode(text) {
    const pad = "=".repeat((4 - (text.length % 4)) % 4);
    const bin = atob((text + pad).replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  },
  encode(buffer) {
    const bytes = new Uint8Array(buffer);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
};

function message(key) {
  return document.body.dataset[key] || document.body.dataset.msgGeneric;
}

// Known problem types get the page's own language; others show the server's detail
// (validation messages name the field at fault).
const LOCALISED = {
  "/problems/wrong-secret": "msgWrongSecret",
  "/problems/rate-limited": "msgRateLimited",
  "/problems/unauthenticated": "msgUnauthenticated",
  "/problems/vault-locked": "msgVaultLocked",
  "/problems/unavailable": "msgUnavailable",
  "/problems/too-large": "msgTooLarge",
  "/problems/unsupported-file": "msgUnsupportedFile",
};

function problemText(problem) {
  const key = LOCALISED[problem.type];
  if (key && document.body.dataset[key] && document.documentElement.lang !== "en") {
    return document.body.dataset[key];
  }
  return problem.detail || message("msgGeneric");
}

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text;
  box.hidden = false;
  box.focus?.();
}

function clearError() {
  const box = document.getElementById("error");
  box.hidden = true;
  box.textContent = "";
}

function csrf() {
  return document.querySelector('meta[name="csrf-token"]')?.content || "";
}

async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    throw new Error(message("msgNetwork"));
  }
  if (response.status === 204) return {};
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(problemText(data));
  return data;
}

function creationOptions(options) {
  const pk = options.publicKey;
  pk.challenge = b64u.decode(pk.challenge);
  pk.user.id = b64u.decode(pk.user.id);
  (pk.excludeCredentials || []).forEach((c) => (c.id = b64u.decode(c.id)));
  return options;
}

function requestOptions(options) {
  const pk = options.publicKey;
  pk.challenge = b64u.decode(pk.challenge);
  (pk.allowCredentials || []).forEach((c) => (c.id = b64u.decode(c.id)));
  return options;
}

function registrationJson(cred) {
  return {
    id: cred.id,
    rawId: b64u.encode(cred.rawId),
    type: cred.type,
    response: {
      attestationObject: b64u.encode(cred.response.attestationObject),
      clientDataJSON: b64u.encode(cred.response.clientDataJSON),
    },
    extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
  };
}

function assertionJson(cred) {
  const r = cred.response;
  return {
    id: cred.id,
    rawId: b64u.encode(cred.rawId),
    type: cred.type,
    response: {
      authenticatorData: b64u.encode(r.authenticatorData),
      clientDataJSON: b64u.encode(r.clientDataJSON),
      signature: b64u.encode(r.signature),
      userHandle: r.userHandle ? b64u.encode(r.userHandle) : null,
    },
    extensions: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
  };
}

async function passkeyCall(fn) {
  if (!window.PublicKeyCredential) throw new Error(message("msgUnsupported"));
  try {
    return await fn();
  } catch (e) {
    if (e && (e.name === "NotAllowedError" || e.name === "AbortError")) throw new Error(message("msgCancelled"));
    throw e;
  }
}

function onSubmit(id, handler) {
  const form = document.getElementById(id);
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    try {
      await handler(Object.fromEntries(new FormData(form).entries()), form);
    } catch (e) {
      showError(e.message || message("msgGeneric"));
    } finally {
      if (button) button.disabled = false;
    }
  });
}

function onClick(selector, handler) {
  document.querySelectorAll(selector).forEach((el) =>
    el.addEventListener("click", async () => {
      clearError();
      try {
        await handler(el);
      } catch (e) {
        showError(e.message || message("msgGeneric"));
      }
    }),
  );
}

function showRecovery(code) {
  // Each group (with its hyphen) is unbreakable, so a narrow screen wraps between groups.
  const box = document.getElementById("recovery-code");
  box.textContent = "";
  const groups = code.split("-");
  groups.forEach((group, i) => {
    const span = document.createElement("span");
    span.className = "group";
    span.textContent = i < groups.length - 1 ? group + "-" : group;
    box.append(span);
  });
  const section = document.getElementById("recovery");
  section.hidden = false;
  section.scrollIntoView();
}

onSubmit("register-form", async (data, form) => {
  const options = await api("POST", "/auth/register/start", {
    national_id: data.national_id,
    display_name: data.display_name,
  });
  const cred = await passkeyCall(() => navigator.credentials.create(creationOptions(options)));
  const done = await api("POST", "/auth/register/finish", {
    credential: registrationJson(cred),
    passphrase: data.passphrase,
  });
  form.hidden = true;
  showRecovery(done.recovery_code);
});

onSubmit("login-form", async (data) => {
  const options = await api("POST", "/auth/login/start", { national_id: data.national_id });
  const cred = await passkeyCall(() => navigator.credentials.get(requestOptions(options)));
  await api("POST", "/auth/login/finish", { credential: assertionJson(cred) });
  window.location.assign("/unlock");
});

onSubmit("unlock-form", async (data) => {
  await api("POST", "/vault/unlock", { passphrase: data.passphrase });
  window.location.assign("/");
});

onSubmit("passphrase-form", async (data, form) => {
  await api("POST", "/me/passphrase", data);
  form.reset();
  document.getElementById("status").hidden = false;
});

onSubmit("recover-form", async (data, form) => {
  const done = await api("POST", "/vault/recover", data);
  form.reset();
  showRecovery(done.recovery_code);
});

onSubmit("add-passkey-form", async (data) => {
  const options = await api("POST", "/me/passkeys/start");
  const cred = await passkeyCall(() => navigator.credentials.create(creationOptions(options)));
  await api("POST", "/me/passkeys/finish", { credential: registrationJson(cred), label: data.label || null });
  window.location.reload();
});

onClick(".remove-passkey", async (el) => {
  await api("DELETE", "/me/passkeys/" + encodeURIComponent(el.dataset.id));
  window.location.reload();
});

onClick("#logout", async () => {
  await api("POST", "/auth/logout");
  window.location.assign("/");
});

onClick("#logout-everywhere", async () => {
  await api("POST", "/auth/logout-everywhere");
  window.location.assign("/");
});

onClick("#lock", async () => {
  await api("POST", "/vault/lock");
  window.location.reload();
});

// Uploads use XMLHttpRequest for its upload progress events (fetch has none).
function uploadDocument(form) {
  return new Promise((resolve, reject) => {
    const data = new FormData();
    data.append("type", form.dataset.type);
    const fields = {};
    form.querySelectorAll("[data-field]").forEach((el) => {
      if (el.value !== "") fields[el.dataset.field] = el.value;
    });
    data.append("fields", JSON.stringify(fields));
    const file = form.querySelector('input[type="file"]');
    if (file && file.files.length > 0) data.append("file", file.files[0], file.files[0].name);
    const replace = form.dataset.replace;
    const xhr = new XMLHttpRequest();
    xhr.open(replace ? "PUT" : "POST", replace ? "/me/documents/" + encodeURIComponent(replace) : "/me/documents");
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    const bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) {
        const pct = Math.round((e.loaded / e.total) * 100);
        bar.value = pct;
        bar.textContent = pct + "%";
        status.textContent = pct + "%";
      }
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText || "{}"); } catch (_) { body = {}; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else { bar.hidden = true; status.textContent = ""; reject(new Error(problemText(body))); }
    });
    xhr.addEventListener("error", () => { bar.hidden = true; reject(new Error(message("msgNetwork"))); });
    xhr.send(data);
  });
}

onSubmit("document-form", async (_data, form) => {
  const stored = await uploadDocument(form);
  window.location.assign("/documents/" + encodeURIComponent(stored.id));
});

onClick("#delete-document", async (el) => {
  if (!window.confirm(message("msgDeleteConfirm"))) return;
  await api("DELETE", "/me/documents/" + encodeURIComponent(el.dataset.id));
  window.location.assign("/documents");
});

onClick(".revoke-grant", async (el) => {
  if (!window.confirm(message("msgRevokeConfirm"))) return;
  await api("POST", "/me/grants/" + encodeURIComponent(el.dataset.id) + "/revoke", {});
  window.location.reload();
});

document.querySelectorAll(".approve-form").forEach((form) => {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const fd = new FormData(form);
    const body = { tier: fd.get("tier"), duration_days: Number(fd.get("duration_days")) };
    // The ticked fields apply only when sharing at the fields tier.
    if (body.tier === "fields") body.fields = fd.getAll("fields");
    try {
      await api("POST", "/me/requests/" + encodeURIComponent(form.dataset.id) + "/approve", body);
      window.location.assign("/grants");
    } catch (e) {
      showError(e.message || message("msgGeneric"));
    }
  });
});

onClick(".deny-request", async (el) => {
  await api("POST", "/me/requests/" + encodeURIComponent(el.dataset.id) + "/deny", {});
  window.location.reload();
});

onSubmit("grant-form", async (_data, form) => {
  const fd = new FormData(form);
  const body = {
    agency_id: fd.get("agency_id"),
    document_types: fd.getAll("document_types"),
    tier: fd.get("tier"),
    purpose: fd.get("purpose"),
    duration_days: Number(fd.get("duration_days") || 30),
  };
  // Ticked fields (one field may appear under several types; each counts once).
  if (body.tier === "fields") body.fields = [...new Set(fd.getAll("fields"))];
  const legal = String(fd.get("legal_basis") || "").trim();
  if (legal) body.legal_basis = legal;
  const maxReads = Number(fd.get("max_reads") || 0);
  if (maxReads > 0) body.max_reads = maxReads;
  await api("POST", "/me/grants", body);
  window.location.reload();
});

onSubmit("audit-enrol-form", async (data) => {
  const options = await api("POST", "/audit/auth/enrol/start", { token: data.token });
  const cred = await passkeyCall(() => navigator.credentials.create(creationOptions(options)));
  await api("POST", "/audit/auth/enrol/finish", { credential: registrationJson(cred) });
  window.location.assign("/audit");
});

onSubmit("audit-login-form", async (data) => {
  const options = await api("POST", "/audit/auth/login/start", { name: data.name });
  const cred = await passkeyCall(() => navigator.credentials.get(requestOptions(options)));
  await api("POST", "/audit/auth/login/finish", { credential: assertionJson(cred) });
  window.location.assign("/audit");
});

onSubmit("reveal-form", async (data) => {
  const done = await api("POST", "/api/v1/audit/reveal", {
    pseudonym: data.pseudonym,
    reason: data.reason,
  });
  document.getElementById("revealed-id").textContent = done.national_id;
  document.getElementById("revealed").hidden = false;
});

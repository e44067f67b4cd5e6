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

async function api(method, path, body, retried) {
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
  if (!retried && response.status === 403 && String(data.type).endsWith("/step-up-required")) {
    // An account change: confirm with the passkey (it counts for 5 minutes), then retry.
    await stepUp();
    return api(method, path, body, true);
  }
  if (!response.ok) throw new Error(problemText(data));
  return data;
}

async function stepUp() {
  const options = await api("POST", "/me/step-up/start", undefined, true);
  const cred = await passkeyCall(() => navigator.credentials.get(requestOptions(options)));
  await api("POST", "/me/step-up/finish", { credential: assertionJson(cred) }, true);
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
    enrolment_code: data.enrolment_code || null,
  });
  const cred = await passkeyCall(() => navigator.credentials.create(creationOptions(options)));
  const done = await api("POST", "/auth/register/finish", {
    credential: registrationJson(cred),
    passphrase: data.passphrase,
  });
  if (!done.recovery_code) {
    // A re-enrolment: the new passkey replaced the lost ones; the vault opens as usual.
    window.location.assign(done.unlocked ? "/" : "/unlock");
    return;
  }
  form.hidden = true;
  showRecovery(done.recovery_code);
});

// After a national eID sign-in: go on to unlock. A redirect from the provider's
// cross-site navigation would not carry the SameSite=Strict session cookie; a navigation
// started by this page does.
document.querySelectorAll("[data-continue]").forEach((link) => window.location.assign(link.href));

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
  const done = await api("POST", "/me/passphrase", data);
  form.reset();
  document.getElementById("status").hidden = false;
  // The vault key was rotated: the old recovery code no longer works.
  showRecovery(done.recovery_code);
});

onSubmit("recover-form", async (data, form) => {
  const done = await api("POST", "/vault/recover", data);
  form.reset();
  showRecovery(done.recovery_code);
});

onSubmit("emergency-form", async (_data, form) => {
  // Adding a type asks for the passkey (a step-up), then keeps the choice.
  await api("PUT", "/me/emergency", { document_types: new FormData(form).getAll("document_types") });
  window.location.assign("/settings?saved=emergency#emergency");
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

onClick(".accept-document", async (el) => {
  await api("POST", "/me/documents/" + encodeURIComponent(el.dataset.id) + "/accept", {});
  window.location.reload();
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

// Delegations: appoint, accept, end, and the acting-for switch (a cookie the server
// checks against a live delegation on every request).
onSubmit("delegation-form", async (_data, form) => {
  const fd = new FormData(form);
  await api("POST", "/me/delegations", {
    delegate_national_id: String(fd.get("delegate_national_id") || "").trim(),
    document_types: fd.getAll("document_types"),
    actions: fd.getAll("actions"),
    duration_days: Number(fd.get("duration_days") || 90),
  });
  window.location.reload();
});

onClick(".accept-delegation", async (el) => {
  await api("POST", `/me/delegations/${el.dataset.id}/accept`);
  window.location.reload();
});

onClick(".end-delegation", async (el) => {
  await api("POST", `/me/delegations/${el.dataset.id}/end`);
  window.location.reload();
});

onClick(".act-for", async (el) => {
  await api("POST", "/me/acting-for", { principal: el.dataset.principal });
  window.location.assign("/documents");
});

onClick("#act-as-myself", async () => {
  await api("POST", "/me/acting-for", { principal: null });
  window.location.assign("/delegations");
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

document.querySelectorAll(".emergency-review-form").forEach((form) => {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const data = Object.fromEntries(new FormData(form).entries());
    try {
      await api("POST", `/api/v1/audit/emergencies/${form.dataset.grant}/review`, {
        verdict: data.verdict,
        note: data.note,
      });
      window.location.assign(`/audit?reviewed=${form.dataset.grant}#emergencies`);
    } catch (e) {
      showError(e.message || message("msgGeneric"));
    }
  });
});

onSubmit("confirm-form", async (data) => {
  const done = await api("POST", "/api/v1/audit/confirm-identity", {
    pseudonym: data.pseudonym,
    national_id: data.national_id,
    reason: data.reason,
  });
  const out = document.getElementById("confirmed");
  out.textContent = done.matches ? out.dataset.yes : out.dataset.no;
  out.dataset.matches = String(done.matches);
  out.hidden = false;
});

// --- Proofs on /activity -------------------------------------------------------------
// Each listed event is checked here, in the browser, without trusting the server: the
// newest witnessed checkpoint (a C2SP signed note) must carry a valid Ed25519 signature by
// one of the log keys shown on the page and at least the quorum of witness cosignatures
// (C2SP cosignature/v1), and each event's RFC 9162 inclusion proof must lead from
// SHA-256(0x00 ‖ its canonical bytes) to the checkpoint's root.

const utf8 = new TextEncoder();

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// `name+hex id+base64(alg ‖ key)`; the base64 may hold '+', the name never does.
function parseVerifierKey(text) {
  const first = text.indexOf("+");
  const second = text.indexOf("+", first + 1);
  if (first < 1 || second < 0) return null;
  const raw = fromBase64(text.slice(second + 1));
  return {
    name: text.slice(0, first),
    id: parseInt(text.slice(first + 1, second), 16),
    alg: raw[0],
    key: raw.slice(1),
  };
}

function parseNote(note) {
  const split = note.indexOf("\n\n");
  if (split < 0) return null;
  const text = note.slice(0, split + 1);
  const signatures = note
    .slice(split + 2)
    .split("\n")
    .filter((l) => l.startsWith("— "))
    .map((l) => {
      const [, name, sig] = l.split(" ");
      const bytes = fromBase64(sig);
      return { name, id: new DataView(bytes.buffer).getUint32(0), bytes: bytes.slice(4) };
    });
  const [origin, size, root] = text.split("\n");
  return { text, signatures, origin, size: Number(size), root: fromBase64(root) };
}

async function ed25519Verify(key, signature, message) {
  try {
    const k = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, k, signature, message);
  } catch (_) {
    return false;
  }
}

// How many witnesses cosigned, or -1 when the log's own signature does not hold.
async function checkCheckpoint(note, logKeys, witnessKeys) {
  const text = utf8.encode(note.text);
  let signed = false;
  for (const k of logKeys) {
    if (k.alg !== 1 || k.name !== note.origin) continue;
    for (const s of note.signatures) {
      if (s.name === k.name && s.id === k.id && (await ed25519Verify(k.key, s.bytes, text))) {
        signed = true;
      }
    }
  }
  if (!signed) return -1;
  let cosigned = 0;
  for (const w of witnessKeys) {
    if (w.alg !== 4) continue;
    const s = note.signatures.find((x) => x.name === w.name && x.id === w.id);
    if (!s || s.bytes.length !== 72) continue;
    const time = new DataView(s.bytes.buffer, s.bytes.byteOffset).getBigUint64(0);
    const message = concat(utf8.encode(`cosignature/v1\ntime ${time}\n`), text);
    if (await ed25519Verify(w.key, s.bytes.slice(8), message)) cosigned += 1;
  }
  return cosigned;
}

// RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or null.
async function rootFromInclusion(index, size, leaf, proof) {
  if (index >= size) return null;
  const one = Uint8Array.of(1);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(one, p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await sha256(one, r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

async function eventHolds(event, seq, note) {
  let claimed;
  try {
    claimed = JSON.parse(event.event).seq;
  } catch (_) {
    return false;
  }
  if (claimed !== seq || event.seq !== seq || event.leaf_index !== seq - 1) return false;
  const leaf = await sha256(Uint8Array.of(0), utf8.encode(event.event));
  const root = await rootFromInclusion(event.leaf_index, note.size, leaf, event.proof.map(fromBase64));
  return root !== null && sameBytes(root, note.root);
}

async function checkProofs(panel) {
  const rows = Array.from(document.querySelectorAll("li[data-seq]"));
  const mark = (row, state) => {
    const badge = row.querySelector(".proof");
    badge.dataset.proof = state;
    badge.textContent = panel.dataset["msg" + state[0].toUpperCase() + state.slice(1)];
    badge.className = "proof badge proof-" + state;
  };
  rows.forEach((row) => mark(row, "checking"));
  const summary = document.getElementById("proof-summary");
  const keys = (name) => (panel.dataset[name] || "").split(" ").filter(Boolean).map(parseVerifierKey).filter(Boolean);
  const response = await fetch("/me/activity/proofs", { headers: { Accept: "application/json" } });
  if (response.status === 404) {
    summary.textContent = panel.dataset.msgSummaryNone;
    rows.forEach((row) => mark(row, "pending"));
    return;
  }
  if (!response.ok) throw new Error(`proofs: ${response.status}`);
  const bundle = await response.json();
  const note = parseNote(bundle.checkpoint.note);
  const cosigned = note ? await checkCheckpoint(note, keys("logKeys"), keys("witnessKeys")) : -1;
  const quorum = Number(panel.dataset.quorum || 0);
  if (cosigned < 0 || cosigned < quorum) {
    summary.textContent = panel.dataset.msgSummaryBad;
    summary.className = "issuer unverified";
    rows.forEach((row) => mark(row, "failed"));
    return;
  }
  const witnessed = keys("witnessKeys").length > 0;
  summary.textContent = (witnessed ? panel.dataset.msgSummaryWitnessed : panel.dataset.msgSummaryOk)
    .replace("{size}", String(note.size))
    .replace("{count}", String(cosigned));
  summary.className = "issuer verified";
  const bySeq = new Map(bundle.events.map((e) => [e.seq, e]));
  for (const row of rows) {
    const seq = Number(row.dataset.seq);
    if (seq > note.size) {
      mark(row, "pending");
      continue;
    }
    let event = bySeq.get(seq);
    if (!event) {
      // Older than the bundle's newest events: ask for this one's proof on its own, and
      // hold it to the same checkpoint.
      const single = await fetch(`/me/activity/${seq}/proof`, { headers: { Accept: "application/json" } });
      event = single.ok ? await single.json() : null;
      if (event && event.checkpoint.note !== bundle.checkpoint.note) event = null;
    }
    mark(row, event && (await eventHolds(event, seq, note)) ? "verified" : "failed");
  }
}

const proofPanel = document.getElementById("proof-check");
if (proofPanel && window.crypto && crypto.subtle) {
  checkProofs(proofPanel).catch((e) => {
    document.getElementById("proof-summary").textContent = proofPanel.dataset.msgSummaryBad;
    console.error(e);
  });
}

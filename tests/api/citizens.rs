//! Citizens: passkey accounts, vault passphrase, recovery code, sessions (SPEC G5, G6).

use custodia::on_engine;
use serde_json::{Value, json};

use crate::citizen_kit::{Citizen, PASSPHRASE, enrolment_code};
use crate::helpers::{Backend, assert_problem, both_backends, national_id, spawn_app};

both_backends!(
    register_logout_login_unlock_change_and_recover,
    replayed_and_cross_account_ceremonies_are_refused,
    wrong_passphrase_is_refused_and_rate_limited,
    a_stranger_who_knows_the_national_id_cannot_lock_its_owner_out,
    fifty_wrong_passphrases_at_once_get_no_more_tries_than_five,
    per_address_limits_count_the_client_a_trusted_proxy_names,
    one_account_flooding_unlock_does_not_starve_another,
    a_locked_session_cannot_decrypt_and_csrf_is_required,
    sessions_end_when_idle_and_everywhere_at_once,
    passkeys_are_added_and_the_last_is_kept,
    registration_input_is_validated,
    no_secret_or_identity_is_stored_in_clear,
);

async fn register_logout_login_unlock_change_and_recover(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(1), "张伟").await;
    assert_eq!(c.recovery_code.len(), 34, "grouped 28-character code");

    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["unlocked"], true);
    assert_eq!(me["display_name"], "张伟");
    assert_eq!(me["citizen_id"], c.citizen_id.as_str());

    assert_eq!(c.post("/auth/logout", json!({})).await.status(), 204);
    assert_problem(c.me().await, 401).await;

    c.login().await;
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["unlocked"], false);
    assert_eq!(me["display_name"], Value::Null, "sealed until unlocked");

    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["display_name"], "张伟");

    let new_passphrase = "violet harbour marble ninety";
    let changed = c
        .post(
            "/me/passphrase",
            json!({ "current_passphrase": PASSPHRASE, "new_passphrase": new_passphrase }),
        )
        .await;
    assert_eq!(changed.status(), 200);
    // The vault key was rotated: the recovery code that wrapped the old one is replaced.
    let body: Value = changed.json().await.unwrap();
    let renewed = body["recovery_code"].as_str().unwrap().to_owned();
    assert_ne!(renewed, c.recovery_code);
    c.recovery_code = renewed;
    c.post("/auth/logout", json!({})).await;
    c.login().await;
    assert_problem(c.unlock(PASSPHRASE).await, 403).await;
    assert_eq!(c.unlock(new_passphrase).await.status(), 200);

    // Forgot the passphrase: the recovery code sets a new one, and is itself replaced.
    c.post("/auth/logout", json!({})).await;
    c.login().await;
    let recovered_passphrase = "saffron glacier tunnel eleven";
    let recovered = c
        .post(
            "/vault/recover",
            json!({ "recovery_code": c.recovery_code, "new_passphrase": recovered_passphrase }),
        )
        .await;
    assert_eq!(recovered.status(), 200);
    let body: Value = recovered.json().await.unwrap();
    assert_eq!(body["unlocked"], true);
    let fresh_code = body["recovery_code"].as_str().unwrap().to_owned();
    assert_ne!(fresh_code, c.recovery_code);
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["display_name"], "张伟");

    let reused = c
        .post(
            "/vault/recover",
            json!({ "recovery_code": c.recovery_code, "new_passphrase": "another long phrase here" }),
        )
        .await;
    assert_problem(reused, 403).await;

    c.post("/auth/logout", json!({})).await;
    c.login().await;
    assert_problem(c.unlock(new_passphrase).await, 403).await;
    assert_eq!(c.unlock(recovered_passphrase).await.status(), 200);
    app.stop().await;
}

async fn replayed_and_cross_account_ceremonies_are_refused(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut a = Citizen::register(&app, &national_id(2), "Li Na").await;
    let mut b = Citizen::register(&app, &national_id(3), "Wang Fang").await;

    // A replayed login finish finds its ceremony gone.
    let assertion = a.assertion().await;
    let first = a
        .post("/auth/login/finish", json!({ "credential": assertion }))
        .await;
    assert_eq!(first.status(), 200);
    let replay = a
        .post("/auth/login/finish", json!({ "credential": assertion }))
        .await;
    assert_problem(replay, 401).await;

    // A's assertion answered to B's ceremony: refused.
    let a_assertion = a.assertion().await;
    let b_start = b
        .post("/auth/login/start", json!({ "national_id": b.national_id }))
        .await;
    assert_eq!(b_start.status(), 200);
    let swapped = b
        .post("/auth/login/finish", json!({ "credential": a_assertion }))
        .await;
    assert_problem(swapped, 401).await;

    // A replayed registration finish cannot create a second account.
    let mut c = Citizen {
        national_id: national_id(4),
        enrolment_code: Some(enrolment_code(&app, &national_id(4)).await),
        ..Citizen::register(&app, &national_id(5), "Zhao Lei").await
    };
    let credential = c.registration_credential().await;
    let ok = c
        .post(
            "/auth/register/finish",
            json!({ "credential": credential, "passphrase": PASSPHRASE }),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let again = c
        .post(
            "/auth/register/finish",
            json!({ "credential": credential, "passphrase": PASSPHRASE }),
        )
        .await;
    assert_problem(again, 401).await;

    // Garbage credentials are refused, not crashed on.
    let _ = b.assertion().await;
    let garbage = b
        .post("/auth/login/finish", json!({ "credential": { "id": "x" } }))
        .await;
    assert!(garbage.status().is_client_error());
    assert_eq!(
        garbage.headers()["content-type"],
        "application/problem+json"
    );
    app.stop().await;
}

async fn wrong_passphrase_is_refused_and_rate_limited(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(6), "Chen Jie").await;
    c.post("/auth/logout", json!({})).await;
    c.login().await;
    for _ in 0..5 {
        let body = assert_problem(c.unlock("not my passphrase at all").await, 403).await;
        assert_eq!(body["type"], "/problems/wrong-secret");
    }
    let limited = c.unlock(PASSPHRASE).await;
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 300);
    assert_problem(limited, 429).await;
    // The window passes; the right passphrase works again.
    app.clock.advance(time::Duration::minutes(5));
    // The session would have gone idle meanwhile: sign in again.
    c.login().await;
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);
    app.stop().await;
}

/// One account flooding unlock with its right passphrase gets one Argon2 at a time (the
/// rest 429 with `Retry-After`, at once), and another citizen unlocking meanwhile is
/// served, not told the server is busy. (Fifteen at once: both are on the tests' one
/// address, which may have twenty attempts in flight.)
async fn one_account_flooding_unlock_does_not_starve_another(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut flooder = Citizen::register(&app, &national_id(63), "Flood").await;
    let mut other = Citizen::register(&app, &national_id(64), "Other").await;
    for c in [&mut flooder, &mut other] {
        c.post("/auth/logout", json!({})).await;
        c.login().await;
    }
    let flood = futures_util::future::join_all((0..15).map(|_| flooder.unlock(PASSPHRASE)));
    let (flood, theirs) = tokio::join!(flood, other.unlock(PASSPHRASE));
    assert_eq!(theirs.status(), 200);
    let statuses: Vec<u16> = flood.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    for refused in flood.iter().filter(|r| r.status() == 429) {
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{retry}");
    }
    // The refused ones were never tried: the account's limit is untouched.
    assert_eq!(flooder.unlock(PASSPHRASE).await.status(), 200);
    app.stop().await;
}

/// Anyone who knows a national ID (every agency holding a grant does) starting sign-in for
/// it again and again, and sending assertions that fail, does not stop its owner from
/// signing in with her passkey.
async fn a_stranger_who_knows_the_national_id_cannot_lock_its_owner_out(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(61), "Lin Fang").await;
    c.post("/auth/logout", json!({})).await;
    let stranger = reqwest::Client::new();
    for _ in 0..30 {
        let started = stranger
            .post(format!("{}/auth/login/start", app.base))
            .json(&json!({ "national_id": c.national_id }))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 200);
    }
    for _ in 0..12 {
        let failed = stranger
            .post(format!("{}/auth/login/finish", app.base))
            .json(&json!({ "credential": { "id": "AAAA", "rawId": "AAAA", "type": "public-key",
                "response": { "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA" } } }))
            .send()
            .await
            .unwrap();
        assert!(failed.status().is_client_error(), "{}", failed.status());
    }
    c.login().await;
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);
    app.stop().await;
}

/// Fifty wrong passphrases sent at once: each attempt is taken from the limit before
/// Argon2 runs, so no more than five are tried — the rest answer 429 at once — and each
/// try is in the trail.
async fn fifty_wrong_passphrases_at_once_get_no_more_tries_than_five(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(62), "Zhou Min").await;
    c.post("/auth/logout", json!({})).await;
    c.login().await;
    let before = app.state.store.audit_extent().await.unwrap().0;
    let answers =
        futures_util::future::join_all((0..50).map(|_| c.unlock("not my passphrase at all"))).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let tried = statuses.iter().filter(|&&s| s == 403).count();
    assert!((1..=5).contains(&tried), "{statuses:?}");
    assert!(
        statuses.iter().all(|&s| s == 403 || s == 429 || s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|&&s| s == 429).count() >= 45,
        "{statuses:?}"
    );
    // Every passphrase Argon2 tried is recorded as a failed unlock; nothing else was tried.
    let after = app.state.store.audit_extent().await.unwrap().0;
    assert_eq!(after - before, tried as i64, "unlock attempts recorded");
    // Only the tries count: what is left of the five is there, then the limit holds for
    // the right passphrase too, until the window passes.
    for _ in tried..5 {
        assert_eq!(c.unlock("not my passphrase at all").await.status(), 403);
    }
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 429);
    app.clock.advance(time::Duration::minutes(5));
    c.login().await;
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);
    app.stop().await;
}

/// Registration starts from one address: 20 an hour. Behind a trusted proxy each client
/// is counted apart (an IPv6 client by its /64); from anyone else a forwarding header is
/// ignored, so it cannot be used to get more tries.
async fn per_address_limits_count_the_client_a_trusted_proxy_names(backend: Backend) {
    let start = |base: String, forwarded_for: &'static str| async move {
        reqwest::Client::new()
            .post(format!("{base}/auth/register/start"))
            .header("X-Forwarded-For", forwarded_for)
            .json(&json!({ "national_id": national_id(70), "display_name": "Wu Lei" }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // No enrolment code is sent: each start is refused for that (422), and still counted.
    const COUNTED: u16 = 422;
    const SPOOFED: [&str; 21] = [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
        "198.51.100.5",
        "198.51.100.6",
        "198.51.100.7",
        "198.51.100.8",
        "198.51.100.9",
        "198.51.100.10",
        "198.51.100.11",
        "198.51.100.12",
        "198.51.100.13",
        "198.51.100.14",
        "198.51.100.15",
        "198.51.100.16",
        "198.51.100.17",
        "198.51.100.18",
        "198.51.100.19",
        "198.51.100.20",
        "198.51.100.21",
    ];

    // No proxy configured: every request is the peer's, whatever it claims.
    let (_env, app) = spawn_app(backend).await;
    let mut answers = Vec::new();
    for claimed in SPOOFED {
        answers.push(start(app.base.clone(), claimed).await);
    }
    assert_eq!(answers[..20], [COUNTED; 20], "{answers:?}");
    assert_eq!(answers[20], 429, "{answers:?}");
    app.stop().await;

    // Behind a trusted proxy (the tests' loopback peer).
    let mut env = crate::helpers::TestEnv::new(backend).await;
    env.vars.insert(
        "CUSTODIA_TRUSTED_PROXIES".into(),
        "127.0.0.1/32, ::1".into(),
    );
    let app = env.start().await.unwrap();
    for _ in 0..20 {
        assert_eq!(start(app.base.clone(), "198.51.100.7").await, COUNTED);
    }
    assert_eq!(start(app.base.clone(), "198.51.100.7").await, 429);
    assert_eq!(
        start(app.base.clone(), "198.51.100.8").await,
        COUNTED,
        "another client"
    );
    // A client cannot escape by prefixing its own entry: the proxy's is the one read.
    assert_eq!(
        start(app.base.clone(), "203.0.113.1, 198.51.100.7").await,
        429
    );
    // One IPv6 subscriber's /64 is one client.
    for _ in 0..20 {
        assert_eq!(start(app.base.clone(), "2001:db8:1:2::1").await, COUNTED);
    }
    assert_eq!(start(app.base.clone(), "2001:db8:1:2:ffff::9").await, 429);
    assert_eq!(start(app.base.clone(), "2001:db8:1:3::1").await, COUNTED);
    app.stop().await;
}

async fn a_locked_session_cannot_decrypt_and_csrf_is_required(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(7), "Liu Yang").await;
    c.post("/auth/logout", json!({})).await;
    c.login().await;
    // Locked: the display name stays sealed and the vault key cannot be had.
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["unlocked"], false);
    assert_eq!(me["display_name"], Value::Null);

    // State-changing requests without the CSRF token are refused and change nothing.
    let no_csrf = c
        .http
        .post(format!("{}/vault/unlock", c.base))
        .json(&json!({ "passphrase": PASSPHRASE }))
        .send()
        .await
        .unwrap();
    assert_problem(no_csrf, 403).await;
    let wrong_csrf = c
        .http
        .post(format!("{}/auth/logout", c.base))
        .header("x-csrf-token", "forged")
        .send()
        .await
        .unwrap();
    assert_problem(wrong_csrf, 403).await;
    assert_eq!(c.me().await.status(), 200, "still signed in");

    // Locking again forgets the key.
    assert_eq!(c.unlock(PASSPHRASE).await.status(), 200);
    assert_eq!(c.post("/vault/lock", json!({})).await.status(), 200);
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["display_name"], Value::Null);
    app.stop().await;
}

async fn sessions_end_when_idle_and_everywhere_at_once(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut phone = Citizen::register(&app, &national_id(8), "Yang Min").await;
    app.clock.advance(time::Duration::minutes(16));
    assert_problem(phone.me().await, 401).await;

    phone.login().await;
    // A second browser, same passkey.
    let authenticator = std::mem::take(&mut phone.authenticator);
    let mut laptop = phone.in_another_browser(&app, authenticator);
    laptop.login().await;
    assert_eq!(phone.me().await.status(), 200);
    assert_eq!(laptop.me().await.status(), 200);
    let out = laptop.post("/auth/logout-everywhere", json!({})).await;
    assert_eq!(out.status(), 200);
    assert_eq!(out.json::<Value>().await.unwrap()["sessions_ended"], 2);
    assert_problem(phone.me().await, 401).await;
    assert_problem(laptop.me().await, 401).await;

    // Twelve hours is the limit however active the session is.
    laptop.login().await;
    for _ in 0..49 {
        app.clock
            .advance(time::Duration::minutes(14) + time::Duration::seconds(50));
        if laptop.me().await.status() != 200 {
            break;
        }
    }
    assert_problem(laptop.me().await, 401).await;
    app.stop().await;
}

async fn passkeys_are_added_and_the_last_is_kept(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(9), "Sun Li").await;
    let me: Value = c.me().await.json().await.unwrap();
    let only = me["passkeys"][0]["id"].as_str().unwrap().to_owned();
    let refused = c
        .http
        .delete(format!("{}/me/passkeys/{only}", c.base))
        .header("x-csrf-token", &c.csrf)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 409).await;

    // A second device's passkey.
    let mut second = webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true);
    let start = c.post("/me/passkeys/start", json!({})).await;
    assert_eq!(start.status(), 200);
    let options = start.json().await.unwrap();
    let credential = webauthn_authenticator_rs::WebauthnAuthenticator::do_registration(
        &mut second,
        crate::citizen_kit::origin(),
        options,
    )
    .unwrap();
    let added = c
        .post(
            "/me/passkeys/finish",
            json!({ "credential": credential, "label": "Laptop" }),
        )
        .await;
    assert_eq!(added.status(), 200);
    let me: Value = c.me().await.json().await.unwrap();
    assert_eq!(me["passkeys"].as_array().unwrap().len(), 2);
    assert!(
        me["passkeys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["label"] == "Laptop")
    );

    // The new passkey signs in.
    let mut via_second = c.in_another_browser(&app, second);
    via_second.login().await;

    let removed = c
        .http
        .delete(format!("{}/me/passkeys/{only}", c.base))
        .header("x-csrf-token", &c.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    // Another citizen's passkey id is simply not found.
    let other = Citizen::register(&app, &national_id(10), "Zhou Qi").await;
    let me_other: Value = other.me().await.json().await.unwrap();
    let theirs = me_other["passkeys"][0]["id"].as_str().unwrap();
    let cross = c
        .http
        .delete(format!("{}/me/passkeys/{theirs}", c.base))
        .header("x-csrf-token", &c.csrf)
        .send()
        .await
        .unwrap();
    assert_problem(cross, 404).await;
    app.stop().await;
}

async fn registration_input_is_validated(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let http = app.new_client();
    let post = |body: Value| {
        let http = http.clone();
        let url = app.url("/auth/register/start");
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    let bad_checksum =
        post(json!({ "national_id": "110105194912310021", "display_name": "X" })).await;
    let body = assert_problem(bad_checksum, 422).await;
    assert!(body["detail"].as_str().unwrap().starts_with("national_id"));
    assert_problem(
        post(json!({ "national_id": national_id(11), "display_name": "" })).await,
        422,
    )
    .await;
    assert_problem(post(json!({ "national_id": national_id(11) })).await, 422).await;
    let unknown_field =
        post(json!({ "national_id": national_id(11), "display_name": "A", "admin": true })).await;
    assert_problem(unknown_field, 422).await;
    let not_json = http
        .post(app.url("/auth/register/start"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_problem(not_json, 400).await;
    let huge = http
        .post(app.url("/auth/register/start"))
        .header("content-type", "application/json")
        .body(format!("{{\"national_id\":\"{}\"}}", "1".repeat(200_000)))
        .send()
        .await
        .unwrap();
    assert_problem(huge, 413).await;

    // Weak passphrases are refused before the ceremony is spent; the same answer then works.
    let mut c = Citizen::register(&app, &national_id(12), "Hu Jun").await;
    c.national_id = national_id(13);
    c.enrolment_code = Some(enrolment_code(&app, &national_id(13)).await);
    let credential = c.registration_credential().await;
    for weak in ["password123", "short", "aaaaaaaaaaaaaaaa"] {
        let refused = c
            .post(
                "/auth/register/finish",
                json!({ "credential": credential, "passphrase": weak }),
            )
            .await;
        let body = assert_problem(refused, 422).await;
        assert!(body["detail"].as_str().unwrap().starts_with("passphrase"));
    }
    let ok = c
        .post(
            "/auth/register/finish",
            json!({ "credential": credential, "passphrase": PASSPHRASE }),
        )
        .await;
    assert_eq!(ok.status(), 200);

    // The same national ID cannot register twice; without a code the answer does not say
    // whether it has an account (the same 422 as for any ID).
    let dup = c
        .post(
            "/auth/register/start",
            json!({ "national_id": national_id(12), "display_name": "Hu Jun" }),
        )
        .await;
    let dup = assert_problem(dup, 422).await;
    assert!(
        dup["detail"]
            .as_str()
            .unwrap()
            .starts_with("enrolment_code: is required")
    );
    app.stop().await;
}

async fn no_secret_or_identity_is_stored_in_clear(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    let nid = national_id(14);
    let name = "Guo Xiaoming 郭晓明";
    let c = Citizen::register(&app, &nid, name).await;

    // The vault key, recovered the way only the citizen can: through the passphrase.
    let row = app
        .state
        .store
        .citizen(c.citizen_id.parse().unwrap())
        .await
        .unwrap();
    let kdf: custodia_crypto::kdf::PassphraseKdf =
        serde_json::from_str(&row.passphrase_kdf).unwrap();
    let kek = kdf
        .derive(&custodia_crypto::Passphrase::new(PASSPHRASE.into()))
        .unwrap();
    let aad = custodia_crypto::Aad::new("vault-key")
        .with("citizen", row.id.as_bytes())
        .with("by", "passphrase");
    let vault_key: custodia_crypto::VaultKey =
        custodia_crypto::wrap::unwrap_key(&kek, &row.vault_key_passphrase, &aad).unwrap();
    let vault_bytes = *custodia_crypto::SymmetricKey::expose(&vault_key);
    let code_plain = c.recovery_code.replace('-', "");

    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("national ID", nid.as_bytes().to_vec()),
        ("display name", name.as_bytes().to_vec()),
        ("passphrase", PASSPHRASE.as_bytes().to_vec()),
        ("recovery code", c.recovery_code.as_bytes().to_vec()),
        ("recovery code (ungrouped)", code_plain.as_bytes().to_vec()),
        (
            "enrolment code",
            c.enrolment_code.clone().unwrap().into_bytes(),
        ),
        (
            "enrolment code (ungrouped)",
            c.enrolment_code
                .clone()
                .unwrap()
                .replace('-', "")
                .into_bytes(),
        ),
        ("vault key", vault_bytes.to_vec()),
        (
            "vault key (hex)",
            custodia_crypto::digest::hex(&vault_bytes).into_bytes(),
        ),
    ];

    // Every table, as the database renders it.
    let tables = [
        "service_keys",
        "signing_keys",
        "citizens",
        "credentials",
        "ceremonies",
        "sessions",
        "rate_limits",
        "enrolment_codes",
        "agencies",
        "documents",
        "document_versions",
        "grants",
        "audit_events",
    ];
    let mut dump = Vec::new();
    let mut tx = app.state.store.begin().await.unwrap();
    for table in tables {
        let rows: Vec<String> = on_engine!(&mut tx, conn => {
            match backend {
                Backend::Postgres => sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT t::text FROM {table} t")))
                    .fetch_all(&mut **conn)
                    .await
                    .unwrap(),
                // SQLite: the raw scan of the database file and its log below sees every byte.
                Backend::Sqlite => Vec::new(),
            }
        });
        for r in rows {
            dump.extend_from_slice(r.as_bytes());
        }
    }
    drop(tx);
    app.stop().await;

    // And every file under the data directory, raw (the SQLite database and its log included).
    fn walk(dir: &std::path::Path, out: &mut Vec<u8>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.extend_from_slice(&bytes);
            }
        }
    }
    walk(&env.data_dir(), &mut dump);
    assert!(dump.len() > 1000, "the scan read the data");
    for (what, needle) in needles {
        assert!(
            !dump.windows(needle.len()).any(|w| w == needle.as_slice()),
            "{what} found in clear in the database or data directory"
        );
    }
}

both_backends!(the_sweep_removes_ended_sessions_and_ceremonies);

async fn the_sweep_removes_ended_sessions_and_ceremonies(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(30), "Deng Hui").await;
    let _pending = c.assertion().await; // a ceremony left unfinished
    let count = |sql: &'static str| {
        let store = app.state.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let n: i64 = on_engine!(&mut tx, conn => {
                sqlx::query_scalar(sql).fetch_one(&mut **conn).await.unwrap()
            });
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM ceremonies").await, 1);
    custodia::sessions::sweep(&app.state).await.unwrap();
    assert_eq!(
        count("SELECT COUNT(*) FROM sessions").await,
        1,
        "live session kept"
    );
    app.clock.advance(time::Duration::minutes(16));
    custodia::sessions::sweep(&app.state).await.unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM ceremonies").await, 0);
    app.stop().await;
}

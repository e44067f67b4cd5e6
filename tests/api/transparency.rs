//! The trail as a transparency log (SPEC G3, "against the operator too"): an attacker who can
//! write the database — but holds neither the signing key nor the key directory — rewrites,
//! cuts and re-signs it, and each attempt is caught, naming what is wrong; a citizen proves
//! one of her events is in the signed log with nothing but the public key.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use custodia::audit::chain::{self, Fault};
use custodia::audit::{Action, ActorKind, Event, LogSigner};
use custodia::on_engine;
use custodia_crypto::sign::{SigningKey, VerifyingKey};
use custodia_crypto::tlog;
use serde_json::Value;

use crate::citizen_kit::Citizen;
use crate::helpers::{Backend, TestApp, assert_problem, both_backends, national_id, spawn_app};

both_backends!(
    rewriting_the_history_is_caught_by_the_verifier_and_the_running_server,
    cutting_the_tail_is_refused_by_the_running_server,
    a_key_only_the_database_names_signs_nothing_that_counts,
    a_dropped_checkpoint_is_a_gap_the_verifier_names,
    a_citizen_proves_her_event_is_in_the_signed_log,
    a_server_restarted_on_a_rolled_back_database_refuses_to_start,
);

const MINUTE_MS: i64 = 60_000;

pub(crate) async fn sql(app: &TestApp, text: &str) {
    let mut tx = app.state.store.begin().await.unwrap();
    on_engine!(&mut tx, c => {
        sqlx::query(sqlx::AssertSqlSafe(text.to_owned())).execute(&mut **c).await.unwrap();
    });
    tx.commit().await.unwrap();
}

fn event(n: usize) -> Event {
    Event::new(
        ActorKind::Agency,
        Some("agency-1".into()),
        Action::DocumentRead,
    )
    .officer(Some("officer-7"), Some("CASE-1"))
    .citizen(Some("p-0123"))
    .objects([format!("doc-{n}")])
}

pub(crate) async fn append(app: &TestApp, count: usize) {
    for n in 0..count {
        app.state.audit.append(event(n)).await.unwrap();
    }
}

pub(crate) fn advance(app: &TestApp, ms: i64) {
    app.clock.advance(time::Duration::milliseconds(ms));
}

/// Thirty events, a checkpoint over them, two minutes of quiet, then twenty more (the
/// first of which is signed with its batch, being more than a minute after the last
/// checkpoint).
async fn trail(app: &TestApp) {
    append(app, 30).await;
    app.checkpoint_now().await.expect("a checkpoint at 30");
    advance(app, 2 * MINUTE_MS);
    append(app, 20).await;
    let summary = app.verify_trail().await.expect("intact");
    assert_eq!(summary.head_seq, 50);
    let at: Vec<i64> = app
        .state
        .store
        .audit_checkpoints()
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(
        at,
        [0, 30, 31],
        "genesis, the one asked for, the one after the quiet"
    );
}

/// Changes the officer of every event from `from` on: in the bytes on SQLite (whose
/// columns are views of them), in the column on PostgreSQL.
pub(crate) async fn rewrite_officer(app: &TestApp, backend: Backend, from: i64) {
    let edit = match backend {
        Backend::Sqlite => {
            "UPDATE audit_events SET body = json_set(body, '$.officer_id', 'nobody')"
        }
        Backend::Postgres => "UPDATE audit_events SET officer_id = 'nobody'",
    };
    sql(app, &format!("{edit} WHERE seq >= {from}")).await;
}

/// What an attacker with the database can do without any key: recompute every hash of a
/// changed history — the chain and the whole Merkle tree — and move the head.
pub(crate) async fn recompute_everything(app: &TestApp) {
    let store = &app.state.store;
    let rows = store.audit_events_after(0, 100_000).await.unwrap();
    sql(app, "DELETE FROM audit_events").await;
    let mut tx = store.begin().await.unwrap();
    let mut prev = chain::GENESIS.to_vec();
    let count = rows.len() as i64;
    for mut row in rows {
        row.prev_hash = prev.clone();
        row.hash = chain::event_hash(&prev, &row).to_vec();
        row.body = Some(chain::canonical(&row));
        prev = row.hash.clone();
        tx.insert_audit_event(&row).await.unwrap();
    }
    tx.set_audit_head(count, &prev).await.unwrap();
    tx.commit().await.unwrap();
    sql(app, "DELETE FROM audit_tree").await;
    sql(app, "UPDATE audit_head SET tree_size = 0").await;
    custodia::audit::extend_tree(store).await.unwrap();
}

async fn rewriting_the_history_is_caught_by_the_verifier_and_the_running_server(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    trail(&app).await;

    // Rewrite events 20…50 (whose officer was it?), recompute every hash, and delete the
    // checkpoints that would betray it.
    rewrite_officer(&app, backend, 20).await;
    sql(&app, "DELETE FROM audit_checkpoints WHERE seq >= 20").await;
    recompute_everything(&app).await;

    // Event 31 came two minutes after the last checkpoint left standing, and the server
    // signs such an event with its own batch: its checkpoint is missing.
    let fault = app.verify_trail().await.unwrap_err();
    assert_eq!(
        (fault.seq, fault.kind),
        (31, "checkpoint-missing"),
        "{fault}"
    );

    // The running server does not carry on over the changed history: it neither appends
    // nor signs (before, it signed a fresh checkpoint over the forgery within a minute).
    let refused = app.state.audit.append(event(99)).await;
    assert!(
        matches!(refused, Err(custodia::error::Error::AuditUnavailable)),
        "{refused:?}"
    );
    advance(&app, 2 * MINUTE_MS);
    assert!(app.state.audit.append(event(100)).await.is_err());
    let newest = app.state.store.last_checkpoint().await.unwrap().unwrap();
    assert!(newest.seq < 20, "nothing was signed over the forgery");
}

async fn cutting_the_tail_is_refused_by_the_running_server(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    trail(&app).await;
    // An agency reading under a grant, as on any day.
    let agency =
        crate::agency_kit::Agency::create(&app, "省公安厅", custodia::agencies::Level::Provincial)
            .await;
    let citizen = Citizen::register(&app, &national_id(71), "Cut").await;
    let uploaded: Value = citizen
        .upload(
            None,
            "business_license",
            crate::citizen_kit::licence_fields("截断公司"),
            Some(("licence.pdf", crate::citizen_kit::pdf_bytes(4096, "cut"))),
        )
        .await
        .json()
        .await
        .unwrap();
    let document = uploaded["id"].as_str().unwrap().to_owned();
    let grant = citizen
        .grant_to(
            &agency.id,
            serde_json::json!({"document_ids": [document], "tier": "full", "purpose": "核验", "duration_days": 7}),
        )
        .await;
    let file = format!("/api/v1/grants/{grant}/documents/{document}/file");
    assert_eq!(agency.read(&file).await.status(), 200);

    sql(&app, "DELETE FROM audit_events WHERE seq > 25").await;
    sql(&app, "DELETE FROM audit_checkpoints WHERE seq > 25").await;
    recompute_everything(&app).await;
    assert_eq!(app.state.store.audit_head().await.unwrap().0, 25);

    // The server remembers signing 31 events: a trail of 25 does not extend it.
    assert!(matches!(
        app.state.audit.append(event(1)).await,
        Err(custodia::error::Error::AuditUnavailable)
    ));
    assert_eq!(app.state.store.audit_head().await.unwrap().0, 25);
    // So the agency's next read is refused before a byte of the document leaves.
    let refused = agency.read(&file).await;
    let problem = assert_problem(refused, 503).await;
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("audit-unavailable"),
        "{problem}"
    );
    assert_eq!(app.state.store.audit_head().await.unwrap().0, 25);
}

async fn a_key_only_the_database_names_signs_nothing_that_counts(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    trail(&app).await;

    // The attacker's own key, published in the database, re-signing everything.
    let mine = SigningKey::generate();
    let public = mine.verifying_key().to_bytes();
    let key_id = custodia::keyring::key_fingerprint(&public);
    let mut tx = app.state.store.begin().await.unwrap();
    tx.publish_signing_key(&key_id, &public, 1).await.unwrap();
    tx.commit().await.unwrap();
    sql(&app, "DELETE FROM audit_checkpoints").await;
    let forger = LogSigner {
        key: mine,
        key_id: key_id.clone(),
        origin: app.state.config.audit_origin(),
        memory: None,
    };
    custodia::audit::checkpoint_now(&app.state.store, &forger, app.state.clock.now_ms())
        .await
        .unwrap()
        .expect("signed");
    let fault = app.verify_trail().await.unwrap_err();
    assert_eq!(fault.kind, "untrusted-key", "{fault}");
    assert!(fault.detail.contains(&key_id), "{fault}");
    assert!(fault.detail.contains("only in the database"), "{fault}");

    // The CLI can be told to trust a key explicitly (a key published before a rotation,
    // say), and then the same trail verifies.
    let mut trust = app.state.audit_trust();
    trust
        .keys
        .push((key_id, VerifyingKey::from_bytes(&public).unwrap()));
    custodia::audit::verify(&app.state.store, &trust, |_, _| {})
        .await
        .unwrap()
        .expect("trusted on purpose");
}

async fn a_dropped_checkpoint_is_a_gap_the_verifier_names(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    // 1,100 events from 55 writers: the sequencer signs at exactly 1,000.
    let mut tasks = Vec::new();
    for _ in 0..55 {
        let log = app.state.audit.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                log.append(event(n)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seqs: Vec<i64> = app
        .state
        .store
        .audit_checkpoints()
        .await
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, [0, 1000]);
    app.verify_trail().await.expect("intact");

    sql(&app, "DELETE FROM audit_checkpoints WHERE seq = 1000").await;
    let fault = app.verify_trail().await.unwrap_err();
    assert_eq!(
        (fault.seq, fault.kind),
        (1, "checkpoint-missing"),
        "{fault}"
    );
}

async fn a_citizen_proves_her_event_is_in_the_signed_log(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(501), "Proof").await;
    let other = Citizen::register(&app, &national_id(502), "Other").await;
    let trail: Value = c.get("/me/activity").await.json().await.unwrap();
    let seq = trail["events"][0]["seq"].as_i64().unwrap();
    let theirs: Value = other.get("/me/activity").await.json().await.unwrap();
    let their_seq = theirs["events"][0]["seq"].as_i64().unwrap();

    // Not yet in a checkpoint: come back in a minute.
    assert_problem(c.get(&format!("/me/activity/{seq}/proof")).await, 409).await;
    app.checkpoint_now().await;

    // Someone else's event, or one that does not exist: not found, alike.
    assert_problem(c.get(&format!("/me/activity/{their_seq}/proof")).await, 404).await;
    assert_problem(c.get("/me/activity/999999/proof").await, 404).await;

    let proof: Value = c
        .get(&format!("/me/activity/{seq}/proof"))
        .await
        .json()
        .await
        .unwrap();
    // Checked with the published key only — nothing the server says is taken on trust.
    let published: Value = app
        .get("/api/v1/audit/public-key")
        .await
        .json()
        .await
        .unwrap();
    let key = VerifyingKey::from_bytes(
        &URL_SAFE_NO_PAD
            .decode(published["public_key"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let checkpoint = &proof["checkpoint"];
    let origin = checkpoint["origin"].as_str().unwrap();
    let head = tlog::open_checkpoint(
        checkpoint["note"].as_str().unwrap(),
        origin,
        std::slice::from_ref(&key),
        &[],
    )
    .expect("signed by the published key");
    let event_bytes = proof["event"].as_str().unwrap();
    let event: Value = serde_json::from_str(event_bytes).unwrap();
    assert_eq!(event["seq"], seq);
    assert_eq!(event["action"], trail["events"][0]["action"]);
    let leaf = tlog::leaf_hash(event_bytes.as_bytes());
    let hashes = |v: &Value| -> Vec<[u8; 32]> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| {
                STANDARD
                    .decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect()
    };
    let path = hashes(&proof["proof"]);
    let index = proof["leaf_index"].as_u64().unwrap();
    assert!(tlog::check_inclusion(
        &path, head.size, &head.root, index, &leaf
    ));

    // A tampered proof, or a changed event, fails.
    let mut bent = path.clone();
    if let Some(first) = bent.first_mut() {
        first[0] ^= 1;
        assert!(!tlog::check_inclusion(
            &bent, head.size, &head.root, index, &leaf
        ));
    }
    let changed = event_bytes.replace("\"seq\":", "\"seq\":1");
    assert!(!tlog::check_inclusion(
        &path,
        head.size,
        &head.root,
        index,
        &tlog::leaf_hash(changed.as_bytes())
    ));

    // The public checkpoint and a consistency proof from it to a later one.
    let first: Value = app
        .get("/api/v1/audit/checkpoint")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["note"], checkpoint["note"]);
    Citizen::register(&app, &national_id(503), "Later").await;
    app.checkpoint_now().await;
    let second: Value = app
        .get("/api/v1/audit/checkpoint")
        .await
        .json()
        .await
        .unwrap();
    let newer =
        tlog::open_checkpoint(second["note"].as_str().unwrap(), origin, &[key], &[]).unwrap();
    assert!(newer.size > head.size);
    let consistency: Value = app
        .get(&format!(
            "/api/v1/audit/consistency?from={}&to={}",
            head.size, newer.size
        ))
        .await
        .json()
        .await
        .unwrap();
    assert!(tlog::check_consistency(
        &hashes(&consistency["proof"]),
        newer.size,
        &newer.root,
        head.size,
        &head.root
    ));
    for bad in [
        format!("from={}&to={}", newer.size, head.size),
        format!("from=0&to={}", newer.size),
        format!("from=1&to={}", newer.size + 1),
    ] {
        assert_problem(
            app.get(&format!("/api/v1/audit/consistency?{bad}")).await,
            422,
        )
        .await;
    }
    assert_problem(app.get("/api/v1/audit/consistency?from=x&to=2").await, 400).await;

    // The trail page offers the bundle for download.
    let page = c.get("/activity").await.text().await.unwrap();
    assert!(page.contains("href=\"/me/activity/proofs\""), "{page}");

    // The bundle a citizen takes away, checked offline by the CLI with the published key
    // only; a bent proof is caught (exit 3).
    let bundle = c.get("/me/activity/proofs").await;
    assert_eq!(bundle.status(), 200);
    let bundle: Value = bundle.json().await.unwrap();
    assert!(!bundle["events"].as_array().unwrap().is_empty());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proofs.json");
    std::fs::write(&file, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let check = |path: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_custodia"))
            .args(["audit", "verify-proof"])
            .arg(path)
            .args(["--trusted-key", published["public_key"].as_str().unwrap()])
            .env("CUSTODIA_DATA_DIR", dir.path().join("elsewhere"))
            .output()
            .unwrap()
    };
    let out = check(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("proven in the log"));
    let mut bent = bundle.clone();
    let first = bent["events"][0]["event"].as_str().unwrap().to_owned();
    bent["events"][0]["event"] = Value::String(first.replace("\"seq\":", "\"seq\": "));
    let bent_file = dir.path().join("bent.json");
    std::fs::write(&bent_file, serde_json::to_vec(&bent).unwrap()).unwrap();
    let out = check(&bent_file);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not hold"));

    // A consent receipt names the key that signed it and proves the grant's creation is in
    // the signed log.
    let agency =
        crate::agency_kit::Agency::create(&app, "证明局", custodia::agencies::Level::Provincial)
            .await;
    let grant = c
        .grant_to(
            &agency.id,
            serde_json::json!({ "document_types": ["business_license"], "tier": "verify", "purpose": "核验" }),
        )
        .await;
    app.checkpoint_now().await;
    let receipt: Value = c
        .get(&format!("/me/grants/{grant}/receipt"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["key_id"], published["key_id"]);
    assert_eq!(receipt["receipt"]["signing_key_id"], published["key_id"]);
    let inclusion = &receipt["inclusion"];
    let logged: Value = serde_json::from_str(inclusion["event"].as_str().unwrap()).unwrap();
    assert_eq!(logged["action"], "grant.create");
    assert_eq!(logged["grant_id"], grant.as_str());
    let head = tlog::open_checkpoint(
        inclusion["checkpoint"]["note"].as_str().unwrap(),
        origin,
        &[VerifyingKey::from_bytes(
            &URL_SAFE_NO_PAD
                .decode(published["public_key"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap()],
        &[],
    )
    .unwrap();
    assert!(tlog::check_inclusion(
        &hashes(&inclusion["proof"]),
        head.size,
        &head.root,
        inclusion["leaf_index"].as_u64().unwrap(),
        &tlog::leaf_hash(inclusion["event"].as_str().unwrap().as_bytes()),
    ));
}

async fn a_server_restarted_on_a_rolled_back_database_refuses_to_start(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    // The sequencer itself signs 31 (the batch after two quiet minutes) and remembers it
    // beside its data.
    trail(&app).await;
    app.stop().await;
    let remembered = std::fs::read_to_string(env.data_dir().join("audit-checkpoint")).unwrap();
    assert!(remembered.contains("\n31\n"), "{remembered}");

    // Back to an older state: the trail as it was at 25, with every hash consistent.
    let app = env.start().await.unwrap();
    sql(&app, "DELETE FROM audit_events WHERE seq > 25").await;
    sql(&app, "DELETE FROM audit_checkpoints WHERE seq > 25").await;
    recompute_everything(&app).await;
    app.stop().await;
    verify_stopped(&env)
        .await
        .expect("the database alone looks intact");

    let refused = env.start().await;
    let message = match refused {
        Ok(_) => panic!("a server started on a rolled-back trail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        message.contains("does not extend checkpoint 31"),
        "{message}"
    );
}

/// Verifies the database of a stopped environment (a second, short-lived server would
/// append its own events).
async fn verify_stopped(env: &crate::helpers::TestEnv) -> Result<chain::Summary, Fault> {
    let config = env.config();
    let store = custodia::store::Store::connect(&config).await.unwrap();
    let trust = custodia::audit::Trust::new(
        config.audit_origin(),
        custodia::keyring::pinned_keys(&config.signing_key_file()).unwrap(),
    );
    let result = custodia::audit::verify(&store, &trust, |_, _| {})
        .await
        .unwrap();
    store.close().await;
    result
}

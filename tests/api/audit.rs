//! The audit trail (SPEC G2, G3): every kind of tampering done directly in the database is
//! caught with the right sequence number; several nodes append to one chain; the CLI
//! verifies and exports.

use custodia::agencies::Level;
use custodia::audit::chain::{self, Fault};
use custodia::on_engine;
use custodia::store::audit::AuditRow;
use serde_json::json;

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, licence_fields};
use crate::helpers::{Backend, TestApp, both_backends, national_id, spawn_app};

both_backends!(
    every_kind_of_tampering_is_caught_at_its_sequence_number,
    two_nodes_on_one_database_append_one_chain,
    a_batch_written_at_once_writes_all_or_nothing,
);

/// Builds a trail of some dozens of events: registration, uploads, a grant, reads.
async fn busy_trail(app: &TestApp) {
    let agency = Agency::create(app, "审计测试局", Level::Provincial).await;
    let c = Citizen::register(app, &national_id(301), "Audited").await;
    for i in 0..3 {
        let r = c
            .upload(
                None,
                "business_license",
                licence_fields(&format!("审计{i}公司")),
                None,
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let g: serde_json::Value = c
        .post(
            "/me/grants",
            json!({ "agency_id": agency.id, "document_types": ["business_license"], "tier": "verify", "purpose": "审计" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let g = g["id"].as_str().unwrap();
    let docs: serde_json::Value = agency
        .read(&format!("/api/v1/grants/{g}/documents"))
        .await
        .json()
        .await
        .unwrap();
    for d in docs["documents"].as_array().unwrap() {
        for _ in 0..4 {
            let r = agency
                .read(&format!(
                    "/api/v1/grants/{g}/documents/{}",
                    d["id"].as_str().unwrap()
                ))
                .await;
            assert_eq!(r.status(), 200);
        }
    }
}

async fn verify(app: &TestApp) -> Result<chain::Summary, Fault> {
    app.verify_trail().await
}

async fn sql(app: &TestApp, text: &str) {
    try_sql(app, text).await.unwrap();
}

async fn try_sql(app: &TestApp, text: &str) -> Result<(), sqlx::Error> {
    sql_steps(app, &[text]).await
}

/// Runs `steps` in one transaction, on one connection: a schema changed by one step is
/// the schema the next one sees.
async fn sql_steps(app: &TestApp, steps: &[&str]) -> Result<(), sqlx::Error> {
    let mut tx = app.state.store.begin().await.unwrap();
    for text in steps {
        on_engine!(&mut tx, c => {
            sqlx::query(sqlx::AssertSqlSafe(text.to_string())).execute(&mut **c).await?;
        });
    }
    tx.commit().await.unwrap();
    Ok(())
}

/// Puts the trail back exactly as it was.
async fn restore(
    app: &TestApp,
    rows: &[AuditRow],
    head: &(i64, Vec<u8>),
    checkpoints: &[custodia::store::audit::CheckpointRow],
) {
    sql(app, "DELETE FROM audit_events").await;
    sql(app, "DELETE FROM audit_checkpoints").await;
    let mut tx = app.state.store.begin().await.unwrap();
    for r in rows {
        tx.insert_audit_event(r).await.unwrap();
    }
    for c in checkpoints {
        tx.insert_checkpoint(c).await.unwrap();
    }
    tx.set_audit_head(head.0, &head.1).await.unwrap();
    tx.commit().await.unwrap();
    verify(app).await.expect("restored trail verifies");
}

async fn every_kind_of_tampering_is_caught_at_its_sequence_number(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    // With every character JSON escapes, and some it must leave alone: the database's
    // rendering of the columns (PostgreSQL's check; SQLite's once its table is redefined,
    // below) must agree with the bytes byte for byte.
    hard_trail(&app).await;
    let store = &app.state.store;
    let signed = custodia::audit::checkpoint_now(
        store,
        &app.state.log_signer().unwrap(),
        custodia::clock::Clock::now_ms(&app.clock),
    )
    .await
    .unwrap()
    .expect("a checkpoint over the new events");
    let summary = verify(&app).await.expect("intact");
    assert_eq!(summary.last_checkpoint, Some(signed));
    assert!(summary.head_seq >= 15, "{summary:?}");

    let rows = store
        .audit_events_with_bytes_after(0, 10_000)
        .await
        .unwrap();
    let head = store.audit_head().await.unwrap();
    let checkpoints = store.audit_checkpoints().await.unwrap();
    let n = head.0;

    // A modified field: in the bytes the hash covers, and in the column pages show.
    sql(
        &app,
        "UPDATE audit_events SET body = replace(body, '\"outcome\":\"ok\"', '\"outcome\":\"refused\"') WHERE seq = 7",
    )
    .await;
    let f = verify(&app).await.unwrap_err();
    assert_eq!((f.seq, f.kind), (7, "modified"), "{f}");
    restore(&app, &rows, &head, &checkpoints).await;
    assert!(verify(&app).await.is_ok(), "restored");
    // A column edited apart from the bytes (what pages and exports show, not what the hash
    // covers): SQLite computes every column from the bytes, so the database refuses the
    // edit; PostgreSQL stores them, and verification holds each one to its bytes.
    let edited = try_sql(
        &app,
        "UPDATE audit_events SET officer_id = 'someone-else' WHERE seq = 7",
    )
    .await;
    match backend {
        Backend::Sqlite => {
            let refused = edited.unwrap_err().to_string();
            assert!(refused.contains("generated column"), "{refused}");
        }
        Backend::Postgres => {
            edited.unwrap();
            let f = verify(&app).await.unwrap_err();
            assert_eq!((f.seq, f.kind), (7, "modified"), "{f}");
            assert!(f.detail.contains("columns"), "{f}");
            restore(&app, &rows, &head, &checkpoints).await;
        }
    }

    // A deleted row.
    sql(&app, "DELETE FROM audit_events WHERE seq = 9").await;
    let f = verify(&app).await.unwrap_err();
    assert_eq!((f.seq, f.kind), (9, "missing"), "{f}");
    restore(&app, &rows, &head, &checkpoints).await;

    // An inserted row: a well-formed event slipped in after 10, later rows renumbered.
    sql(
        &app,
        "UPDATE audit_events SET seq = seq + 100000 WHERE seq > 10",
    )
    .await;
    sql(
        &app,
        "UPDATE audit_events SET seq = seq - 100000 + 1 WHERE seq > 100000",
    )
    .await;
    let mut forged = rows[9].clone();
    forged.seq = 11;
    forged.prev_hash = rows[9].hash.clone();
    forged.action = "document.read".into();
    forged.hash = chain::event_hash(&forged.prev_hash, &forged).to_vec();
    forged.body = Some(chain::canonical(&forged));
    let mut tx = store.begin().await.unwrap();
    tx.insert_audit_event(&forged).await.unwrap();
    tx.commit().await.unwrap();
    let f = verify(&app).await.unwrap_err();
    assert_eq!((f.seq, f.kind), (12, "inserted-or-reordered"), "{f}");
    restore(&app, &rows, &head, &checkpoints).await;

    // Two rows swapped.
    sql(&app, "UPDATE audit_events SET seq = -1 WHERE seq = 5").await;
    sql(&app, "UPDATE audit_events SET seq = 5 WHERE seq = 6").await;
    sql(&app, "UPDATE audit_events SET seq = 6 WHERE seq = -1").await;
    let f = verify(&app).await.unwrap_err();
    assert_eq!((f.seq, f.kind), (5, "inserted-or-reordered"), "{f}");
    restore(&app, &rows, &head, &checkpoints).await;

    // The tail cut after a checkpoint, head rolled back to match.
    let keep = n - 5;
    sql(
        &app,
        &format!("DELETE FROM audit_events WHERE seq > {keep}"),
    )
    .await;
    let keep_hash = rows[(keep - 1) as usize].hash.clone();
    let mut tx = store.begin().await.unwrap();
    tx.set_audit_head(keep, &keep_hash).await.unwrap();
    tx.commit().await.unwrap();
    let f = verify(&app).await.unwrap_err();
    assert_eq!((f.seq, f.kind), (keep + 1, "truncated"), "{f}");
    restore(&app, &rows, &head, &checkpoints).await;

    // A forged checkpoint: a head hash the key never signed.
    sql(
        &app,
        &format!(
            "UPDATE audit_checkpoints SET head_hash = head_hash || head_hash WHERE seq = {signed}"
        ),
    )
    .await;
    let f = verify(&app).await.unwrap_err();
    assert_eq!((f.seq, f.kind), (signed, "checkpoint-forged"), "{f}");
    restore(&app, &rows, &head, &checkpoints).await;

    // A checkpoint signed by another key.
    let other = custodia_crypto::sign::SigningKey::generate();
    let fake = chain::sign_checkpoint(&other, &app.state.keys.signing_key_id, n, &head.1, 1);
    sql(&app, "DELETE FROM audit_checkpoints").await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_checkpoint(&fake).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(verify(&app).await.unwrap_err().kind, "checkpoint-forged");
    restore(&app, &rows, &head, &checkpoints).await;

    if matches!(backend, Backend::Sqlite) {
        // The table redefined to store its columns, as an attacker with the file can: the
        // definition is not the one whose columns are views of the bytes, so every page
        // holds the stored columns to the bytes, and an edit is still caught at its event.
        sql_steps(
            &app,
            &[
                "CREATE TABLE stored_events AS SELECT * FROM audit_events",
                "DROP TABLE audit_events",
                "ALTER TABLE stored_events RENAME TO audit_events",
            ],
        )
        .await
        .unwrap();
        assert!(!store.audit_columns_derived().await.unwrap());
        verify(&app)
            .await
            .expect("the same events, their columns stored");
        sql(
            &app,
            "UPDATE audit_events SET officer_id = 'someone-else' WHERE seq = 7",
        )
        .await;
        let f = verify(&app).await.unwrap_err();
        assert_eq!((f.seq, f.kind), (7, "modified"), "{f}");
        assert!(f.detail.contains("columns"), "{f}");
    }
}

/// [`busy_trail`], and an event whose detail is [`JSON_HARD`].
async fn hard_trail(app: &TestApp) {
    busy_trail(app).await;
    app.state
        .audit
        .append(
            custodia::audit::Event::new(
                custodia::audit::ActorKind::System,
                None,
                custodia::audit::Action::GrantExpire,
            )
            .detail(JSON_HARD),
        )
        .await
        .unwrap();
}

/// Quotes, backslashes, every escaped control character, DEL, a line separator, non-ASCII
/// and an astral character: what RFC 8785 escapes and what it leaves as it is.
const JSON_HARD: &str =
    "\"q\" \\b\\ \u{1}\u{8}\t\n\u{b}\u{c}\r\u{1e}\u{1f} \u{7f} \u{2028} / é 中 😀 '";

async fn two_nodes_on_one_database_append_one_chain(backend: Backend) {
    let (env, first) = spawn_app(backend).await;
    let second = env
        .start()
        .await
        .expect("a second node on the same database");
    let mut tasks = Vec::new();
    for node in [&first.state, &second.state] {
        for w in 0..8 {
            let audit = node.audit.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    audit
                        .append(
                            custodia::audit::Event::new(
                                custodia::audit::ActorKind::System,
                                None,
                                custodia::audit::Action::GrantExpire,
                            )
                            .detail(format!("writer {w} event {i}")),
                        )
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let summary = verify(&first).await.expect("one chain");
    assert!(summary.events >= 400, "{summary:?}");
    second.stop().await;
}

/// A SQLite trail from before its columns became views of the bytes — stored columns, and
/// events written before their bytes were kept (`body` NULL) — is carried over by the
/// migration: the bytes it writes for the old events are the ones their hashes were
/// computed over (the trail verifies), and every column reads as before.
#[tokio::test]
async fn a_trail_with_stored_columns_is_carried_over_to_columns_from_bytes() {
    let env = crate::helpers::TestEnv::new(Backend::Sqlite).await;
    let app = env.start().await.unwrap();
    hard_trail(&app).await;
    let before = app.state.store.audit_events_after(0, 10_000).await.unwrap();
    assert!(before.len() > 15, "{}", before.len());
    assert!(before.iter().any(|e| e.grant_id.is_some()));
    assert!(
        before
            .iter()
            .any(|e| e.detail.as_deref() == Some(JSON_HARD))
    );
    // Back to the table as migrations 0001–0006 left it, every other event without bytes.
    sql_steps(
        &app,
        &[
        "CREATE TABLE stored AS SELECT seq, at, actor_kind, actor_id, officer_id, case_id, \
         citizen_pseudonym, action, object_ids, grant_id, purpose, tier, fields, outcome, \
         bytes_sent, request_id, detail, prev_hash, hash, body FROM audit_events",
        "DROP TABLE audit_events",
        "ALTER TABLE stored RENAME TO audit_events",
        "UPDATE audit_events SET body = NULL WHERE seq % 2 = 0",
        "CREATE INDEX audit_events_citizen ON audit_events(citizen_pseudonym, seq)",
        "CREATE INDEX audit_events_actor ON audit_events(actor_kind, actor_id, seq)",
        "CREATE INDEX audit_events_at ON audit_events(at)",
        "CREATE INDEX audit_events_grant_created ON audit_events(grant_id) WHERE action = 'grant.create'",
        "DELETE FROM _sqlx_migrations WHERE version = 7",
        ],
    )
    .await
    .unwrap();
    assert!(!app.state.store.audit_columns_derived().await.unwrap());
    app.stop().await;

    let app = env.start().await.expect("the migration runs at start");
    assert!(app.state.store.audit_columns_derived().await.unwrap());
    let after = app.state.store.audit_events_after(0, 10_000).await.unwrap();
    assert_eq!(after[..before.len()], before[..]);
    let summary = verify(&app).await.expect("the carried-over trail verifies");
    assert!(summary.events >= before.len() as u64);
    let bytes = app
        .state
        .store
        .audit_events_with_bytes_after(0, 10_000)
        .await
        .unwrap();
    for e in &bytes {
        assert_eq!(
            e.body.as_deref(),
            Some(chain::canonical(e).as_str()),
            "{}",
            e.seq
        );
    }
    app.stop().await;
}

/// The one-hand-off batch (`Store::append_batch_at_once`) checks what the sequencer
/// assumed in the transaction that writes: a head that moved, or a claim that does not
/// hold, leaves the database exactly as it was (on PostgreSQL the head's move, already
/// made by the same statement, is undone too), and the batch is answered "go step by step".
/// When every assumption holds it writes everything, checkpoints byte for byte.
async fn a_batch_written_at_once_writes_all_or_nothing(backend: Backend) {
    use custodia::ids::{DocumentId, GrantId};
    use custodia::store::audit::{CheckpointRow, QuickBatch};
    use custodia::store::reads::ReadCover;

    let (_env, app) = spawn_app(backend).await;
    let store = &app.state.store;
    let (seq, head) = store.audit_head().await.unwrap();
    let row = |at_seq: i64| AuditRow {
        seq: at_seq,
        at: 1_700_000_000_000,
        actor_kind: "system".into(),
        actor_id: None,
        officer_id: None,
        case_id: None,
        citizen_pseudonym: None,
        action: "grant.expire".into(),
        object_ids: "[]".into(),
        grant_id: None,
        purpose: None,
        tier: None,
        fields: None,
        outcome: "ok".into(),
        bytes_sent: None,
        request_id: None,
        detail: None,
        prev_hash: head.clone(),
        hash: vec![7; 32],
        body: Some("{}".into()),
    };
    let rows = [row(seq + 1)];
    let tree = [(u64::try_from(seq).unwrap() * 2, [9u8; 32])];
    let cover = ReadCover {
        key_hash: vec![1; 32],
        document: DocumentId::random(),
        version: 1,
    };
    let batch = |after: (i64, &'static [u8]), claims| QuickBatch {
        after,
        claims,
        rows: &rows,
        tree: &tree,
        seq: seq + 1,
        head: &[7; 32],
        checkpoints: &[],
        now_ms: 1_700_000_000_000,
    };
    let stale_head: &'static [u8] = &[3; 32];
    let current: &'static [u8] = Box::leak(head.clone().into_boxed_slice());
    // The head moved since the sequencer chained the batch.
    assert!(
        !store
            .append_batch_at_once(&batch((seq, stale_head), Vec::new()))
            .await
            .unwrap()
    );
    // The head holds, but a read's claim does not (no such grant).
    let claims = vec![(GrantId::random(), &cover, 1)];
    assert!(
        !store
            .append_batch_at_once(&batch((seq, current), claims))
            .await
            .unwrap()
    );
    assert_eq!(store.audit_head().await.unwrap(), (seq, head.clone()));
    assert!(store.audit_events_after(seq, 10).await.unwrap().is_empty());

    // When every assumption holds, the one hand-off writes it all: the event, the head and
    // a checkpoint whose bytes and text (quotes, a new line) arrive as they were signed.
    let body = r#"{"action":"grant.expire","actor_kind":"system","at":1700000000000,"object_ids":"[]","outcome":"ok"}"#;
    let rows = [AuditRow {
        body: Some(body.into()),
        ..row(seq + 1)
    }];
    let checkpoint = CheckpointRow {
        seq: seq + 1,
        head_hash: vec![7; 32],
        at: 1_700_000_000_000,
        key_id: "key \"one\"".into(),
        signature: vec![0, 255, 1, 254],
        root_hash: Some(vec![5; 32]),
        note: Some("origin\n1\n\"quoted\"\n".into()),
    };
    let checkpoints = [checkpoint.clone()];
    let written = QuickBatch {
        rows: &rows,
        checkpoints: &checkpoints,
        ..batch((seq, current), Vec::new())
    };
    assert!(store.append_batch_at_once(&written).await.unwrap());
    assert_eq!(store.audit_head().await.unwrap(), (seq + 1, vec![7; 32]));
    let stored = store.audit_events_after(seq, 10).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|e| (e.seq, e.hash.clone()))
            .collect::<Vec<_>>(),
        [(seq + 1, vec![7; 32])]
    );
    let signed = store.audit_checkpoints().await.unwrap();
    assert_eq!(signed.last(), Some(&checkpoint));
    app.stop().await;
}

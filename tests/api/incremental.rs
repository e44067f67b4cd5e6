//! Incremental verification (`custodia audit verify --from-checkpoint`): an auditor who verified
//! the trail up to a signed checkpoint verifies only what was added since — provided the
//! database still holds that checkpoint, its events and its tree, and a consistency proof
//! leads from it to the newest checkpoint.

use custodia::audit::chain::{Fault, Summary};
use custodia_crypto::sign::SigningKey;
use custodia_crypto::tlog;

use crate::helpers::{Backend, TestApp, both_backends, spawn_app};
use crate::transparency::{append, recompute_everything, sql};

both_backends!(
    verification_goes_on_from_the_checkpoint_verified_before,
    a_trail_cut_or_rebuilt_behind_the_saved_checkpoint_is_caught,
);

async fn since(app: &TestApp, note: &str) -> Result<Summary, Fault> {
    custodia::audit::verify_since(
        &app.state.store,
        &app.state.audit_trust(),
        Some(note),
        |_, _| {},
    )
    .await
    .unwrap()
}

async fn newest_note(app: &TestApp) -> String {
    app.state
        .store
        .last_checkpoint()
        .await
        .unwrap()
        .unwrap()
        .note
        .unwrap()
}

async fn verification_goes_on_from_the_checkpoint_verified_before(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    append(&app, 30).await;
    app.checkpoint_now().await.unwrap();
    assert_eq!(app.verify_trail().await.unwrap().events, 30);
    let saved = newest_note(&app).await;

    append(&app, 20).await;
    app.checkpoint_now().await.unwrap();
    let summary = since(&app, &saved)
        .await
        .expect("intact since the saved checkpoint");
    assert_eq!(summary.events, 20, "only the new events are walked");
    assert_eq!(summary.head_seq, 50);
    assert_eq!(
        summary.tree_root,
        app.verify_trail().await.unwrap().tree_root,
        "the same tree as a walk from the first event"
    );

    // A change after the saved checkpoint is caught as in a full walk.
    sql(
        &app,
        "UPDATE audit_events SET body = replace(body, 'officer-7', 'someone-else') WHERE seq = 40",
    )
    .await;
    let fault = since(&app, &saved).await.unwrap_err();
    assert_eq!((fault.kind, fault.seq), ("modified", 40), "{fault}");

    // A saved checkpoint nobody pinned the key of is refused.
    let stranger = SigningKey::generate();
    let forged =
        tlog::sign_checkpoint(&stranger, &app.state.config.audit_origin(), 30, &[0; 32], 0)
            .unwrap();
    assert_eq!(
        since(&app, &forged).await.unwrap_err().kind,
        "untrusted-key"
    );
}

async fn a_trail_cut_or_rebuilt_behind_the_saved_checkpoint_is_caught(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    append(&app, 30).await;
    app.checkpoint_now().await.unwrap();
    let saved = newest_note(&app).await;
    append(&app, 10).await;

    // The stored tree under the saved checkpoint is changed: its right edge no longer
    // gives the signed root.
    let edge = tlog::Frontier::needs(30);
    sql(
        &app,
        &format!(
            "UPDATE audit_tree SET hash = hash || hash WHERE idx = {}",
            edge[0]
        ),
    )
    .await;
    let fault = since(&app, &saved).await.unwrap_err();
    assert_eq!(fault.kind, "tree-mismatch", "{fault}");

    // Cut back behind it, every hash recomputed: the saved checkpoint proves the rollback.
    sql(&app, "DELETE FROM audit_events WHERE seq > 20").await;
    sql(&app, "DELETE FROM audit_checkpoints WHERE seq > 20").await;
    recompute_everything(&app).await;
    let fault = since(&app, &saved).await.unwrap_err();
    assert_eq!(fault.kind, "rolled-back", "{fault}");
    assert_eq!(fault.evidence, [saved]);
}

//! Key rotation: the master key under live traffic (and resumed after an interruption),
//! and the signing key, with old checkpoints still verifiable.

use custodia::agencies::Level;
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::citizen_kit::Citizen;
use crate::helpers::{Backend, both_backends, national_id, spawn_app};

both_backends!(
    the_master_key_rotates_under_live_traffic_and_resumes_after_interruption,
    an_unrecorded_master_key_rotation_does_not_complete,
);

use custodia::audit::{Action, operator_record};

/// A rotation whose record cannot be made installs nothing; run again, it completes and is
/// recorded once (SPEC G2 on the key path).
async fn an_unrecorded_master_key_rotation_does_not_complete(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    let master_file = env.config().master_key_file;
    let before = std::fs::read(&master_file).unwrap();
    let refused = custodia::keyring::rotate_master(&app.state.store, &master_file, 1, &|_| None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, custodia::keyring::KeyError::Unrecorded),
        "{refused}"
    );
    assert_eq!(
        std::fs::read(&master_file).unwrap(),
        before,
        "nothing installed"
    );
    assert!(custodia::keyring::next_master_file(&master_file).exists());
    assert_eq!(
        crate::helpers::recorded(&app, "keys.rotate-master").await,
        0
    );

    let record = operator_record(Action::KeysRotateMaster);
    custodia::keyring::rotate_master(&app.state.store, &master_file, 2, &record)
        .await
        .unwrap();
    app.state.audit.flush().await;
    assert_ne!(std::fs::read(&master_file).unwrap(), before);
    assert_eq!(
        crate::helpers::recorded(&app, "keys.rotate-master").await,
        1
    );
    app.stop().await;
}

async fn the_master_key_rotates_under_live_traffic_and_resumes_after_interruption(
    backend: Backend,
) {
    let (env, app) = spawn_app(backend).await;
    let mut agency = Agency::create(&app, "轮换密钥局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(901), "Rotated").await;
    let doc = c.licence("轮换公司", None).await;
    let g = c.grant_to(&agency.id, json!({ "document_ids": [doc], "tier": "fields", "fields": ["company_name"], "purpose": "轮换" })).await;
    let path = format!("/api/v1/grants/{g}/documents/{doc}");
    let master_file = env.config().master_key_file;
    let before = std::fs::read_to_string(&master_file).unwrap();

    // Reads keep flowing while the master key rotates.
    let reader = {
        let agency = Agency {
            id: agency.id.clone(),
            key: agency.key.clone(),
            base: agency.base.clone(),
            http: reqwest::Client::new(),
        };
        let path = path.clone();
        tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..40 {
                assert_eq!(agency.read(&path).await.status(), 200);
                ok += 1;
            }
            ok
        })
    };
    let rotated = custodia::keyring::rotate_master(
        &app.state.store,
        &master_file,
        1,
        &operator_record(Action::KeysRotateMaster),
    )
    .await
    .unwrap();
    assert_eq!(reader.await.unwrap(), 40);
    assert_eq!(
        rotated.rewrapped, 4,
        "grant-wrap, blind-index, identity-escrow and emergency-wrap"
    );
    assert_ne!(rotated.old_id, rotated.new_id);
    assert_ne!(std::fs::read_to_string(&master_file).unwrap(), before);
    assert!(!custodia::keyring::next_master_file(&master_file).exists());
    let keys = app.state.store.service_keys().await.unwrap();
    assert!(keys.iter().all(|k| k.master_key_id == rotated.new_id));

    // After a restart on the new key, everything still opens: grants, lookups by national ID.
    app.stop().await;
    let app = env.start().await.unwrap();
    agency.base = app.base.clone();
    assert_eq!(agency.read(&path).await.status(), 200);
    let asked = agency.ask(&c.national_id, "verify", &[]).await;
    assert_eq!(asked.status(), 201);

    // Interrupted after re-wrapping, before installing: a server starts on the mixed
    // state, and running the command again finishes the job.
    let (_, next_id, n) = custodia::keyring::rewrap_under_next(&app.state.store, &master_file)
        .await
        .unwrap();
    assert_eq!(n, 4);
    app.stop().await;
    let app = env
        .start()
        .await
        .expect("starts while a rotation is half done");
    agency.base = app.base.clone();
    assert_eq!(agency.read(&path).await.status(), 200);
    let resumed = custodia::keyring::rotate_master(
        &app.state.store,
        &master_file,
        1,
        &operator_record(Action::KeysRotateMaster),
    )
    .await
    .unwrap();
    assert_eq!(
        (resumed.new_id.as_str(), resumed.rewrapped),
        (next_id.as_str(), 0)
    );
    app.stop().await;

    // The signing key rotates; checkpoints signed before and after both verify.
    let app = env.start().await.unwrap();
    let store = app.state.store.clone();
    custodia::audit::checkpoint_now(&store, &app.state.log_signer().unwrap(), 1)
        .await
        .unwrap();
    let old_signing = app.state.keys.signing_key_id.clone();
    let new_signing = custodia::keyring::rotate_signing(
        &store,
        &env.config().signing_key_file(),
        2,
        &operator_record(Action::KeysRotateSigning),
    )
    .await
    .unwrap();
    app.stop().await;
    let app = env.start().await.unwrap();
    assert_eq!(app.state.keys.signing_key_id, new_signing);
    agency.base = app.base.clone();
    assert_eq!(agency.read(&path).await.status(), 200);
    custodia::audit::checkpoint_now(&app.state.store, &app.state.log_signer().unwrap(), 3)
        .await
        .unwrap();
    let checkpoints = app.state.store.audit_checkpoints().await.unwrap();
    assert!(checkpoints.iter().any(|c| c.key_id == old_signing));
    assert!(checkpoints.iter().any(|c| c.key_id == new_signing));
    custodia::audit::verify(&app.state.store, &app.state.audit_trust(), |_, _| {})
        .await
        .unwrap()
        .expect("old and new checkpoints verify");
    let published: Value = app
        .get("/api/v1/audit/public-key")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(published["key_id"], new_signing.as_str());
    assert!(published["keys"].as_array().unwrap().len() >= 2);
    app.stop().await;
}

//! `custodia backup` taken while serving, restored into a fresh place: the same documents
//! open and the audit chain verifies (SPEC §4, issue: day two).

use custodia::agencies::Level;
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, PASSPHRASE, pdf_bytes};
use crate::helpers::{Backend, TestEnv, every_store, national_id, spawn_app};

every_store!(a_backup_taken_while_serving_restores_the_same_documents_and_chain);

async fn a_backup_taken_while_serving_restores_the_same_documents_and_chain(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "备份局", Level::Provincial).await;
    let mut c = Citizen::register(&app, &national_id(801), "Backed Up").await;
    let file = pdf_bytes(150_000, "backup");
    let doc = c.licence("备份公司", Some(file.clone())).await;
    let g = c
        .grant_to(
            &agency.id,
            json!({ "document_ids": [doc], "tier": "full", "purpose": "备份" }),
        )
        .await;
    assert_eq!(
        agency
            .read(&format!("/api/v1/grants/{g}/documents/{doc}"))
            .await
            .status(),
        200
    );

    // Online: the server keeps serving reads while the backup runs.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("backup-1");
    let reading = {
        let path = format!("/api/v1/grants/{g}/documents/{doc}");
        let agency = Agency {
            http: reqwest::Client::new(),
            ..agency_clone(&agency)
        };
        tokio::spawn(async move {
            for _ in 0..20 {
                assert_eq!(agency.read(&path).await.status(), 200);
            }
        })
    };
    let written = custodia::backup::run(&env.config(), &target).await.unwrap();
    reading.await.unwrap();
    assert!(written.blobs >= 1);
    assert_eq!(written.keys.len(), 2);
    let mode = std::fs::metadata(target.join("master.key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert!(
        custodia::backup::run(&env.config(), &target).await.is_err(),
        "never into a non-empty directory"
    );

    // Restore into a fresh environment.
    let fresh = TestEnv::new(backend).await;
    copy_dir(&target, &fresh.data_dir());
    if backend == Backend::Postgres {
        let status = std::process::Command::new("pg_restore")
            .args([
                "--no-owner",
                "--dbname",
                &fresh.vars["CUSTODIA_DATABASE_URL"],
            ])
            .arg(target.join("custodia.pgdump"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    if crate::helpers::on_s3() {
        // The backup's blobs go into the fresh bucket as an operator's `aws s3 sync
        // DIR/blobs s3://bucket/prefix` would put them: the same `xx/<name>` keys.
        let bucket = custodia::store::blob::BlobStore::open(&fresh.config().blob_store)
            .await
            .unwrap();
        let mut synced = 0;
        for shard in std::fs::read_dir(target.join("blobs")).unwrap().flatten() {
            if shard.file_name() == "tmp" {
                continue;
            }
            for blob in std::fs::read_dir(shard.path()).unwrap().flatten() {
                let name =
                    custodia::store::blob::BlobName::parse(blob.file_name().to_str().unwrap())
                        .unwrap();
                let mut writer = bucket.create_named(&name).await.unwrap();
                writer
                    .write(&std::fs::read(blob.path()).unwrap())
                    .await
                    .unwrap();
                writer.commit().await.unwrap();
                synced += 1;
            }
        }
        assert_eq!(synced, written.blobs);
    }
    let restored = fresh.start().await.expect("the restored data serves");
    let summary = custodia::audit::verify(
        &restored.state.store,
        &restored.state.audit_trust(),
        |_, _| {},
    )
    .await
    .unwrap()
    .expect("the restored chain verifies");
    assert!(summary.events >= 5);

    // The same citizen signs in with the same passkey, unlocks, and opens the same bytes.
    let passkey = std::mem::replace(
        &mut c.authenticator,
        webauthn_authenticator_rs::softpasskey::SoftPasskey::new(true),
    );
    let mut again = c.in_another_browser(&restored, passkey);
    again.base = restored.base.clone();
    again.login().await;
    assert_eq!(again.unlock(PASSPHRASE).await.status(), 200);
    let opened: Value = again
        .get(&format!("/me/documents/{doc}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(opened["fields"]["company_name"], "备份公司");
    let bytes = again
        .get(&format!("/me/documents/{doc}/file"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), file.as_slice());
    // And the agency's grant still opens the document through the restored master key.
    let restored_agency = Agency {
        base: restored.base.clone(),
        ..agency_clone(&agency)
    };
    assert_eq!(
        restored_agency
            .read(&format!("/api/v1/grants/{g}/documents/{doc}"))
            .await
            .status(),
        200
    );
    restored.stop().await;
    app.stop().await;
}

fn agency_clone(a: &Agency) -> Agency {
    Agency {
        id: a.id.clone(),
        key: a.key.clone(),
        base: a.base.clone(),
        http: a.http.clone(),
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

//! SPEC G5 for identities: nobody on the server side can learn who is behind a
//! pseudonym. National IDs are sealed to the oversight office's public key; the private
//! half leaves the server (`custodia audit oversight-key`), and only its holder reveals
//! one (`custodia audit reveal`), recorded before it prints.

use std::process::Command;

use custodia::on_engine;
use serde_json::Value;

use crate::binary::custodia;
use crate::citizen_kit::Citizen;
use crate::helpers::{Backend, TestEnv, both_backends, national_id};

both_backends!(the_database_and_master_key_open_no_national_id_and_only_the_office_reveals);

fn cli(env: &TestEnv) -> Command {
    let mut cmd = custodia();
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    cmd
}

fn run(mut cmd: Command, args: &[&str]) -> std::process::Output {
    cmd.args(args).output().unwrap()
}

/// Every sealed identity column of every citizen: `(id, escrow, sealed)`.
type Sealed = Vec<(uuid::Uuid, Option<Vec<u8>>, Option<Vec<u8>>)>;

async fn identity_columns(app: &crate::helpers::TestApp) -> Sealed {
    let mut tx = app.state.store.begin().await.unwrap();
    on_engine!(&mut tx, conn => {
        sqlx::query_as("SELECT id, national_id_escrow, national_id_sealed FROM citizens")
            .fetch_all(&mut **conn)
            .await
            .unwrap()
    })
}

fn escrow_aad(citizen: uuid::Uuid) -> custodia_crypto::Aad {
    custodia_crypto::Aad::new("national-id-escrow").with("citizen", citizen.as_bytes())
}

async fn the_database_and_master_key_open_no_national_id_and_only_the_office_reveals(
    backend: Backend,
) {
    let env = TestEnv::new(backend).await;
    let app = env.start().await.unwrap();
    // An account from before: its national ID in the old escrow under a server key.
    let old = Citizen::register(&app, &national_id(500), "Before").await;
    let old_id: uuid::Uuid = old.citizen_id.parse().unwrap();
    let escrow = custodia_crypto::envelope::seal(
        &app.state.keys.identity_escrow,
        &escrow_aad(old_id),
        old.national_id.as_bytes(),
    );
    {
        let mut tx = app.state.store.begin().await.unwrap();
        on_engine!(&mut tx, conn => {
            sqlx::query("UPDATE citizens SET national_id_escrow = $1 WHERE id = $2")
                .bind(&escrow)
                .bind(old_id)
                .execute(&mut **conn)
                .await
                .unwrap();
        });
        tx.commit().await.unwrap();
    }
    let pseudonym_of = |id: uuid::Uuid| {
        let store = app.state.store.clone();
        async move {
            store
                .citizen(custodia::ids::CitizenId::from_uuid(id))
                .await
                .unwrap()
                .pseudonym
        }
    };
    let old_pseudonym = pseudonym_of(old_id).await;

    // The office creates its key; the private half goes to a file for it to take away.
    let office = tempfile::tempdir().unwrap();
    let key_file = office.path().join("oversight.key");
    let created = run(
        cli(&env),
        &[
            "audit",
            "oversight-key",
            "--out",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(String::from_utf8_lossy(&created.stdout).starts_with("oversight key: "));
    assert!(String::from_utf8_lossy(&created.stderr).contains("1 moved"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // It never overwrites a key file.
    let again = run(
        cli(&env),
        &[
            "audit",
            "oversight-key",
            "--out",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(!again.status.success());

    // Registered after: sealed to the office's key at registration.
    let new = Citizen::register(&app, &national_id(501), "After").await;
    let new_id: uuid::Uuid = new.citizen_id.parse().unwrap();

    // With everything the server side holds — the database and every service key the
    // master key unwraps — no national ID opens: no escrow is left, and the sealed IDs
    // open only with the office's private key.
    let columns = identity_columns(&app).await;
    assert_eq!(columns.len(), 2);
    for (id, escrow, sealed) in &columns {
        assert!(escrow.is_none(), "no escrow left for {id}");
        let sealed = sealed.as_deref().expect("sealed to the oversight key");
        for key in [&app.state.keys.identity_escrow, &app.state.keys.grant_wrap] {
            assert!(custodia_crypto::envelope::open(key, &escrow_aad(*id), sealed).is_err());
        }
        for nid in [&old.national_id, &new.national_id] {
            assert!(
                !sealed.windows(nid.len()).any(|w| w == nid.as_bytes()),
                "no national ID in clear"
            );
        }
    }

    // The office reveals, with its key file and a reason; each reveal is recorded first.
    let reason = "Case OV-2026-3: complaint of unauthorised reads";
    for (id, nid) in [(old_id, &old.national_id), (new_id, &new.national_id)] {
        let pseudonym = pseudonym_of(id).await;
        let shown = run(
            cli(&env),
            &[
                "audit",
                "reveal",
                "--key",
                key_file.to_str().unwrap(),
                "--pseudonym",
                &pseudonym,
                "--reason",
                reason,
            ],
        );
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), nid.as_str());
    }
    // Without the key, or with a short reason, nothing is revealed.
    let other_dir = tempfile::tempdir().unwrap();
    let not_a_key = other_dir.path().join("not.key");
    std::fs::write(&not_a_key, b"{}").unwrap();
    for args in [
        vec![
            "audit",
            "reveal",
            "--key",
            not_a_key.to_str().unwrap(),
            "--pseudonym",
            &old_pseudonym,
            "--reason",
            reason,
        ],
        vec![
            "audit",
            "reveal",
            "--key",
            key_file.to_str().unwrap(),
            "--pseudonym",
            &old_pseudonym,
            "--reason",
            "why",
        ],
    ] {
        let refused = run(cli(&env), &args);
        assert!(!refused.status.success());
        assert!(refused.stdout.is_empty(), "nothing printed");
    }
    // A second office key: IDs already sealed stay with the first (the server cannot move
    // them), and the new key cannot open them.
    let second = office.path().join("second.key");
    let created = run(
        cli(&env),
        &["audit", "oversight-key", "--out", second.to_str().unwrap()],
    );
    assert!(created.status.success());
    let wrong = run(
        cli(&env),
        &[
            "audit",
            "reveal",
            "--key",
            second.to_str().unwrap(),
            "--pseudonym",
            &old_pseudonym,
            "--reason",
            reason,
        ],
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("sealed to oversight key"));

    // The citizen sees that their identity was revealed, and why.
    let trail: Value = new
        .get("/me/activity?action=audit.reveal")
        .await
        .json()
        .await
        .unwrap();
    let events = trail["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{trail:#}");
    assert_eq!(events[0]["detail"], reason);
    app.stop().await;
}

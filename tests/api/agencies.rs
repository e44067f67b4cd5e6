//! Agencies: records and API keys (stored hashed, checked by hash, shown once).

use custodia::agencies::{self, Level, NewAgency};
use custodia_crypto::sign::SigningKey;

use crate::helpers::{Backend, both_backends, spawn_app};

both_backends!(an_agency_key_authenticates_and_is_stored_only_hashed);

async fn an_agency_key_authenticates_and_is_stored_only_hashed(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    let created = agencies::create(
        &app.state,
        &NewAgency {
            name: "北京市朝阳区市场监督管理局",
            level: Level::County,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await
    .unwrap();
    assert!(created.api_key.starts_with("cus_"));
    let agency = agencies::authenticate(&app.state, &created.api_key)
        .await
        .unwrap();
    assert_eq!(agency.id, created.id);
    assert_eq!(agency.level, "county");
    for wrong in [
        "cus_nope",
        "",
        "Bearer x",
        &format!("{}x", created.api_key.as_str()),
    ] {
        assert!(
            agencies::authenticate(&app.state, wrong).await.is_err(),
            "{wrong}"
        );
    }

    // An issuer needs a valid Ed25519 key; a consumer must not have one.
    let issuer_key = base64_url(&SigningKey::generate().verifying_key().to_bytes());
    let issuer_types = ["tax_clearance".to_owned()];
    let issuer = agencies::create(
        &app.state,
        &NewAgency {
            name: "国家税务总局北京市税务局",
            level: Level::Provincial,
            issuer: true,
            issuer_key: Some(&issuer_key),
            issuer_types: &issuer_types,
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await
    .unwrap();
    let row = app.state.store.agency(issuer.id).await.unwrap();
    assert!(row.is_issuer && row.issuer_public_key.unwrap().len() == 32);
    assert_eq!(row.issuer_types, r#"["tax_clearance"]"#);
    for (issuer, key) in [
        (true, None),
        (true, Some("not-a-key")),
        (false, Some(issuer_key.as_str())),
    ] {
        let refused = agencies::create(
            &app.state,
            &NewAgency {
                name: "X",
                level: Level::National,
                issuer,
                issuer_key: key,
                issuer_types: &[],
                enroller: false,
                guardianship_authority: false,
                emergency: false,
            },
        )
        .await;
        assert!(matches!(
            refused,
            Err(custodia::error::Error::Invalid { .. })
        ));
    }
    app.stop().await;

    if backend == Backend::Sqlite {
        let mut bytes = std::fs::read(env.data_dir().join("custodia.db")).unwrap();
        bytes.extend(std::fs::read(env.data_dir().join("custodia.db-wal")).unwrap_or_default());
        let key = created.api_key.as_bytes();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key),
            "API key stored in clear"
        );
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

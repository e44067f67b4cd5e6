//! Bounded issuers (issue 18, part 3): an issuer deposits only the document types it is
//! registered for; a key revoked as compromised marks what arrived under it since then as
//! untrusted in every `verify` read; a deposit waits as `received` until the citizen
//! accepts it.

use custodia::agencies::{self, Level, NewAgency};
use custodia::clock::Clock as _;
use custodia_crypto::sign::SigningKey;
use serde_json::{Value, json};

use crate::agency_api::{clearance, sign_deposit};
use crate::agency_kit::Agency;
use crate::citizen_kit::Citizen;
use crate::helpers::{
    Backend, TestApp, assert_problem, every_store, national_id, recorded, spawn_app,
};

every_store!(
    an_issuer_deposits_only_its_registered_types,
    a_revoked_issuer_key_marks_later_deposits_untrusted,
);

fn public(key: &SigningKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes())
}

/// A provincial tax bureau that may deposit `types` only.
async fn bureau(app: &TestApp, types: &[&str]) -> (Agency, SigningKey) {
    let key = SigningKey::generate();
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    let created = agencies::create(
        &app.state,
        &NewAgency {
            name: "某县税务局",
            level: Level::County,
            issuer: true,
            issuer_key: Some(&public(&key)),
            issuer_types: &types,
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await
    .unwrap();
    (
        Agency {
            id: created.id.to_string(),
            key: created.api_key.to_string(),
            base: app.base.clone(),
            http: reqwest::Client::new(),
        },
        key,
    )
}

fn degree(national_id: &str) -> Value {
    json!({
        "national_id": national_id,
        "type": "degree_certificate",
        "fields": {
            "holder_name": "张伟",
            "degree": "doctor",
            "major": "计算机科学与技术",
            "institution": "北京大学",
            "certificate_number": "1000142019001234",
            "conferred_on": "2019-07-01",
        },
        "issued_at": "2019-07-01T00:00:00Z",
    })
}

async fn deposited(app: &TestApp, c: &Citizen) -> usize {
    app.state
        .store
        .citizen_documents(c.citizen_id.parse().unwrap())
        .await
        .unwrap()
        .len()
}

async fn an_issuer_deposits_only_its_registered_types(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (county, key) = bureau(&app, &["tax_clearance"]).await;
    let c = Citizen::register(&app, &national_id(301), "Bounded").await;

    // A county tax bureau minting a degree certificate: refused, recorded, nothing stored —
    // and refused alike for an ID nobody registered (the type is checked first).
    for id in [c.national_id.clone(), national_id(302)] {
        let p = assert_problem(
            county
                .post("/api/v1/issued-documents", sign_deposit(&key, degree(&id)))
                .await,
            403,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("degree_certificate"));
    }
    assert_eq!(deposited(&app, &c).await, 0);
    let refusals = crate::helpers::events(&app)
        .await
        .into_iter()
        .filter(|e| {
            e.action == "document.deposit"
                && e.outcome == "refused"
                && e.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("degree_certificate"))
        })
        .count();
    assert_eq!(refusals, 2);

    // Its own type goes through.
    let r = county
        .post(
            "/api/v1/issued-documents",
            sign_deposit(&key, clearance(&c.national_id, None)),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(deposited(&app, &c).await, 1);

    // Registered for degrees too, it may deposit them; an unknown type is refused.
    let id: custodia::ids::AgencyId = county.id.parse().unwrap();
    agencies::set_issuer_types(
        &app.state,
        id,
        &["tax_clearance,degree_certificate".to_owned()],
    )
    .await
    .unwrap();
    let r = county
        .post(
            "/api/v1/issued-documents",
            sign_deposit(&key, degree(&c.national_id)),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert!(
        agencies::set_issuer_types(&app.state, id, &["starship_licence".to_owned()])
            .await
            .is_err()
    );
    assert_eq!(recorded(&app, "agency.set-issuer-types").await, 1);
}

/// A type-scoped `verify` grant of tax clearances for `consumer`, and what it reads of
/// each covered document: its id and `issuer_signature`.
async fn verify_reads(c: &Citizen, consumer: &Agency) -> Vec<(String, String)> {
    let g = c
        .post(
            "/me/grants",
            json!({ "agency_id": consumer.id, "document_types": ["tax_clearance"], "tier": "verify", "purpose": "完税核验", "legal_basis": "《税收征收管理法》", "duration_days": 7 }),
        )
        .await;
    assert_eq!(g.status(), 201);
    let g: Value = g.json().await.unwrap();
    let g = g["id"].as_str().unwrap();
    let listed: Value = consumer
        .read(&format!("/api/v1/grants/{g}/documents"))
        .await
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for d in listed["documents"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let v: Value = consumer
            .read(&format!("/api/v1/grants/{g}/documents/{id}"))
            .await
            .json()
            .await
            .unwrap();
        out.push((
            id.to_owned(),
            v["issuer_signature"].as_str().unwrap().to_owned(),
        ));
    }
    out
}

async fn a_revoked_issuer_key_marks_later_deposits_untrusted(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (issuer, key) = bureau(&app, &["tax_clearance"]).await;
    let id: custodia::ids::AgencyId = issuer.id.parse().unwrap();
    let consumer = Agency::create(&app, "北京市市场监管局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(303), "Trusting").await;
    let deposit = |key: &SigningKey| {
        let body = sign_deposit(key, clearance(&c.national_id, None));
        let issuer = &issuer;
        async move {
            let r = issuer.post("/api/v1/issued-documents", body).await;
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            v["id"].as_str().unwrap().to_owned()
        }
    };

    // One deposit before the key leaks, one after.
    let before = deposit(&key).await;
    app.clock.advance(time::Duration::minutes(2));
    let leaked_at = app.clock.now() - time::Duration::minutes(1);
    let after = deposit(&key).await;

    // The operator learns of the leak: the key is revoked as compromised a minute ago.
    agencies::revoke_issuer_key(&app.state, id, None, leaked_at)
        .await
        .unwrap();
    assert_eq!(recorded(&app, "agency.revoke-issuer-key").await, 1);
    // It signs nothing more; revoking it again, or a date in the future, is refused.
    let p = assert_problem(
        issuer
            .post(
                "/api/v1/issued-documents",
                sign_deposit(&key, clearance(&c.national_id, None)),
            )
            .await,
        403,
    )
    .await;
    assert_eq!(p["status"], 403);
    assert!(
        agencies::revoke_issuer_key(&app.state, id, Some(&public(&key)), leaked_at)
            .await
            .is_err()
    );
    let fresh = SigningKey::generate();
    assert!(
        agencies::revoke_issuer_key(
            &app.state,
            id,
            Some(&public(&fresh)),
            app.clock.now() + time::Duration::hours(1)
        )
        .await
        .is_err()
    );
    // The revoked key cannot come back; a new key works.
    assert!(
        agencies::set_issuer_key(&app.state, id, &public(&key))
            .await
            .is_err()
    );
    agencies::set_issuer_key(&app.state, id, &public(&fresh))
        .await
        .unwrap();
    let renewed = deposit(&fresh).await;

    // The citizen sees them received, with a button to accept each, and accepts all
    // three; a verify read tells the agency which to trust.
    c.get("/me/documents").await;
    let page = c.get("/documents").await.text().await.unwrap();
    assert_eq!(page.matches("class=\"accept-document\"").count(), 3);
    for d in [&before, &after, &renewed] {
        let r = c
            .post(&format!("/me/documents/{d}/accept"), json!({}))
            .await;
        assert_eq!(r.status(), 200);
    }
    let reads = verify_reads(&c, &consumer).await;
    let trust = |doc: &str| {
        reads
            .iter()
            .find(|(d, _)| d == doc)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    assert_eq!(reads.len(), 3);
    assert_eq!(trust(&before), "valid", "signed before the leak");
    assert_eq!(trust(&after), "untrusted", "signed after the leak");
    assert_eq!(trust(&renewed), "valid", "signed with the new key");

    // The citizen sees it too, on the API and the page.
    let view: Value = c
        .get(&format!("/me/documents/{after}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["issuer"]["trust"], "untrusted");
    assert_eq!(view["issuer"]["signature_valid"], true);
    let page = c
        .get(&format!("/documents/{after}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("class=\"issuer unverified\""));
    let page = c.get("/documents").await.text().await.unwrap();
    assert!(!page.contains("accept-document"), "nothing left to accept");
}

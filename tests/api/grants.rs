//! Grants: policy before consent, keys that follow consent (SPEC G5), signed receipts.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia::agencies::{self, Level, NewAgency};
use custodia::ids::{AgencyId, CitizenId, DocumentId, GrantId};
use custodia_crypto::{Aad, DataKey, GrantKey, digest, envelope, sign::VerifyingKey, wrap};
use serde_json::{Value, json};

use crate::citizen_kit::{Citizen, licence_fields, pdf_bytes};
use crate::helpers::{Backend, TestApp, assert_problem, both_backends, national_id, spawn_app};

both_backends!(
    the_policy_refuses_what_it_should_and_allows_what_it_should,
    only_live_grants_open_with_the_database_and_master_key_alone,
    a_receipt_verifies_offline_and_any_change_breaks_it,
);

async fn agency(app: &TestApp, level: Level) -> AgencyId {
    agencies::create(
        &app.state,
        &NewAgency {
            name: "测试机构",
            level,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await
    .unwrap()
    .id
}

async fn grant(c: &Citizen, body: Value) -> reqwest::Response {
    c.post("/me/grants", body).await
}

fn id_card_fields() -> Value {
    json!({
        "name": "张伟", "gender": "male", "birth_date": "1980-01-01", "address": "北京市东城区",
        "id_number": "11010519800101001X", "issuing_authority": "北京市公安局", "valid_from": "2015-06-01"
    })
}

async fn the_policy_refuses_what_it_should_and_allows_what_it_should(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let county = agency(&app, Level::County).await;
    let province = agency(&app, Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(60), "Policy").await;
    let licence: Value = c
        .upload(None, "business_license", licence_fields("政策公司"), None)
        .await
        .json()
        .await
        .unwrap();
    let licence = licence["id"].as_str().unwrap().to_owned();
    c.upload(None, "resident_id", id_card_fields(), None).await;

    let base = |agency: AgencyId| json!({ "agency_id": agency, "tier": "verify", "purpose": "核验", "duration_days": 7 });
    let with = |mut v: Value, k: &str, x: Value| {
        v[k] = x;
        v
    };

    // Allowed: an unconditional, low-sensitivity type at any tier.
    let ok = grant(
        &c,
        with(
            with(base(county), "document_ids", json!([licence])),
            "tier",
            json!("full"),
        ),
    )
    .await;
    assert_eq!(ok.status(), 201);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["status"], "active");

    // none-class types are never granted.
    let r = grant(
        &c,
        with(
            with(base(province), "document_types", json!(["medical_record"])),
            "legal_basis",
            json!("法"),
        ),
    )
    .await;
    assert!(
        assert_problem(r, 403).await["detail"]
            .as_str()
            .unwrap()
            .contains("never shared")
    );
    // conditional types need a legal basis.
    let r = grant(
        &c,
        with(base(province), "document_types", json!(["resident_id"])),
    )
    .await;
    assert!(
        assert_problem(r, 403).await["detail"]
            .as_str()
            .unwrap()
            .contains("legal basis")
    );
    let conditional = with(
        with(base(province), "document_types", json!(["resident_id"])),
        "legal_basis",
        json!("《行政许可法》第三十一条"),
    );
    assert_eq!(grant(&c, conditional.clone()).await.status(), 201);
    // high sensitivity at full tier only for provincial level or above.
    let full_high = with(conditional.clone(), "tier", json!("full"));
    let r = grant(&c, with(full_high.clone(), "agency_id", json!(county))).await;
    assert!(
        assert_problem(r, 403).await["detail"]
            .as_str()
            .unwrap()
            .contains("full tier")
    );
    assert_eq!(grant(&c, full_high).await.status(), 201);
    // A purpose code limits types and tier (no over-asking).
    let purposed = with(
        with(base(province), "document_ids", json!([licence])),
        "purpose_code",
        json!("employment_check"),
    );
    assert!(
        assert_problem(grant(&c, purposed).await, 403).await["detail"]
            .as_str()
            .unwrap()
            .contains("does not cover")
    );
    let over = with(
        with(
            with(base(province), "document_ids", json!([licence])),
            "purpose_code",
            json!("business_registration"),
        ),
        "tier",
        json!("full"),
    );
    assert!(
        assert_problem(grant(&c, over).await, 403).await["detail"]
            .as_str()
            .unwrap()
            .contains("at most")
    );
    // Shape errors name the field.
    let fields_tier = with(
        with(base(province), "document_ids", json!([licence])),
        "tier",
        json!("fields"),
    );
    assert_problem(grant(&c, fields_tier.clone()).await, 422).await;
    assert_problem(
        grant(
            &c,
            with(fields_tier.clone(), "fields", json!(["favourite_colour"])),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(
        grant(
            &c,
            with(
                fields_tier,
                "fields",
                json!(["company_name", "business_scope"])
            )
        )
        .await
        .status(),
        201
    );
    assert_problem(
        grant(
            &c,
            with(
                with(base(province), "document_ids", json!([licence])),
                "duration_days",
                json!(366),
            ),
        )
        .await,
        422,
    )
    .await;
    assert_problem(
        grant(
            &c,
            with(base(AgencyId::random()), "document_ids", json!([licence])),
        )
        .await,
        422,
    )
    .await;
    assert_problem(grant(&c, base(province)).await, 422).await;
    // Another citizen's document is simply not found.
    let other = Citizen::register(&app, &national_id(61), "Other").await;
    assert_problem(
        grant(
            &other,
            with(base(province), "document_ids", json!([licence])),
        )
        .await,
        404,
    )
    .await;

    let list: Value = c.get("/me/grants").await.json().await.unwrap();
    assert_eq!(list["grants"].as_array().unwrap().len(), 4);
    app.stop().await;
}

/// SPEC G5: with only the database, the blob store and the master key (hence the service
/// keys), exactly the versions covered by live grants open; after they end, none do.
async fn only_live_grants_open_with_the_database_and_master_key_alone(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let province = agency(&app, Level::Provincial).await;
    let mut c = Citizen::register(&app, &national_id(62), "Keys").await;
    let mut docs = Vec::new();
    for name in ["甲", "乙", "丙"] {
        let v: Value = c
            .upload(
                None,
                "business_license",
                licence_fields(name),
                Some(("f.pdf", pdf_bytes(2000, name))),
            )
            .await
            .json()
            .await
            .unwrap();
        docs.push(v["id"].as_str().unwrap().parse::<DocumentId>().unwrap());
    }
    let g1: Value = grant(&c, json!({ "agency_id": province, "document_ids": [docs[0]], "tier": "full", "purpose": "a", "duration_days": 1 }))
        .await
        .json()
        .await
        .unwrap();
    let g2: Value = grant(&c, json!({ "agency_id": province, "document_ids": [docs[1]], "tier": "verify", "purpose": "b", "duration_days": 30 }))
        .await
        .json()
        .await
        .unwrap();
    let owner: CitizenId = c.citizen_id.parse().unwrap();

    // The attacker's view: grants, wraps and sealed versions from the database, the
    // grant-wrap service key from the master key. No passphrase, no session.
    let opens = |app: &TestApp| {
        let ctx = app.state.clone();
        let docs = docs.clone();
        async move {
            let mut opened = Vec::new();
            for g in ctx.store.citizen_grants(owner).await.unwrap() {
                let Some(wrapped) = g.grant_key_wrap else {
                    continue;
                };
                let grant_key: GrantKey = wrap::unwrap_key(
                    &ctx.keys.grant_wrap,
                    &wrapped,
                    &Aad::new("grant-key").with("grant", g.id.as_bytes()),
                )
                .unwrap();
                for w in ctx.store.grant_wraps(g.id).await.unwrap() {
                    let data_key: DataKey = wrap::unwrap_key(
                        &grant_key,
                        &w.wrapped_key,
                        &custodia::sealing::grant_data_key_aad(g.id, w.document_id, w.version),
                    )
                    .unwrap();
                    let v = ctx.store.document_versions(w.document_id).await.unwrap();
                    let meta = v
                        .iter()
                        .find(|x| x.version == w.version)
                        .unwrap()
                        .meta_enc
                        .clone()
                        .unwrap();
                    let aad = Aad::new("document-meta")
                        .with("document", w.document_id.as_bytes())
                        .with("version", w.version.to_be_bytes())
                        .with("owner", owner.as_bytes());
                    if envelope::open(&data_key, &aad, &meta).is_ok() {
                        opened.push(w.document_id);
                    }
                }
            }
            opened.sort();
            let mut expected_universe = docs.clone();
            expected_universe.sort();
            (opened, expected_universe)
        }
    };
    let (opened, _) = opens(&app).await;
    let mut expected = vec![docs[0], docs[1]];
    expected.sort();
    assert_eq!(opened, expected, "exactly the live grants' documents open");

    // Revoke one, let the other expire: then nothing opens.
    let g1 = g1["id"].as_str().unwrap();
    let revoked = c.post(&format!("/me/grants/{g1}/revoke"), json!({})).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(revoked.json::<Value>().await.unwrap()["status"], "revoked");
    assert_problem(
        c.post(&format!("/me/grants/{g1}/revoke"), json!({})).await,
        409,
    )
    .await;
    let (opened, _) = opens(&app).await;
    assert_eq!(opened, vec![docs[1]]);

    app.clock.advance(time::Duration::days(31));
    c.login().await; // the session went idle meanwhile
    let list: Value = c.get("/me/grants").await.json().await.unwrap();
    let g2_id = g2["id"].as_str().unwrap();
    let g2_now = list["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == g2_id)
        .unwrap()
        .clone();
    assert_eq!(
        g2_now["status"], "expired",
        "expired by time before any sweep"
    );
    let ended = custodia::grants::sweep_expired(&app.state).await.unwrap();
    assert_eq!(ended, 1);
    let (opened, _) = opens(&app).await;
    assert!(opened.is_empty(), "after the grants end, nothing opens");
    app.stop().await;
}

async fn a_receipt_verifies_offline_and_any_change_breaks_it(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let province = agency(&app, Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(63), "Receipt").await;
    let g: Value = grant(&c, json!({ "agency_id": province, "document_types": ["business_license"], "tier": "verify", "purpose": "营业执照核验", "duration_days": 7, "max_reads": 3 }))
        .await
        .json()
        .await
        .unwrap();
    let id = g["id"].as_str().unwrap();
    let r: Value = c
        .get(&format!("/me/grants/{id}/receipt"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["receipt"]["grant_id"], id);
    assert_eq!(r["receipt"]["purpose"], "营业执照核验");
    assert_eq!(r["receipt"]["max_reads"], 3);
    let key = VerifyingKey::from_bytes(
        &URL_SAFE_NO_PAD
            .decode(r["public_key"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let signature = URL_SAFE_NO_PAD
        .decode(r["signature"].as_str().unwrap())
        .unwrap();
    let canonical = digest::canonical_json(&r["receipt"]).unwrap();
    key.verify("consent-receipt", canonical.as_bytes(), &signature)
        .unwrap();
    // The audit checkpoints' context does not accept it.
    assert!(
        key.verify("audit-checkpoint", canonical.as_bytes(), &signature)
            .is_err()
    );
    // Any byte changed: refused.
    let bytes = canonical.as_bytes();
    for i in (0..bytes.len()).step_by(7) {
        let mut changed = bytes.to_vec();
        changed[i] ^= 0x01;
        assert!(
            key.verify("consent-receipt", &changed, &signature).is_err(),
            "byte {i}"
        );
    }
    let other = Citizen::register(&app, &national_id(64), "Stranger").await;
    assert_problem(other.get(&format!("/me/grants/{id}/receipt")).await, 404).await;
    app.stop().await;
}

both_backends!(a_type_scoped_grant_covers_documents_added_while_it_lives);

async fn a_type_scoped_grant_covers_documents_added_while_it_lives(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let province = agency(&app, Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(65), "Later").await;
    let by_type: Value = grant(&c, json!({ "agency_id": province, "document_types": ["business_license"], "tier": "verify", "purpose": "p", "duration_days": 7 }))
        .await
        .json()
        .await
        .unwrap();
    let by_type: GrantId = by_type["id"].as_str().unwrap().parse().unwrap();
    assert!(
        app.state
            .store
            .grant_wraps(by_type)
            .await
            .unwrap()
            .is_empty()
    );

    let licence: Value = c
        .upload(None, "business_license", licence_fields("后来公司"), None)
        .await
        .json()
        .await
        .unwrap();
    let licence: DocumentId = licence["id"].as_str().unwrap().parse().unwrap();
    c.upload(
        None,
        "degree_certificate",
        json!({
            "holder_name": "x", "degree": "master", "major": "法学", "institution": "北京大学",
            "certificate_number": "1000142019001234", "conferred_on": "2019-07-01"
        }),
        None,
    )
    .await;
    let wraps = app.state.store.grant_wraps(by_type).await.unwrap();
    assert_eq!(
        wraps
            .iter()
            .map(|w| (w.document_id, w.version))
            .collect::<Vec<_>>(),
        vec![(licence, 1)]
    );

    // A new version is covered too, by the type grant and by a grant naming the document.
    let by_id: Value = grant(&c, json!({ "agency_id": province, "document_ids": [licence], "tier": "verify", "purpose": "q", "duration_days": 7 }))
        .await
        .json()
        .await
        .unwrap();
    let by_id: GrantId = by_id["id"].as_str().unwrap().parse().unwrap();
    c.upload(
        Some(&licence.to_string()),
        "business_license",
        licence_fields("后来公司二"),
        None,
    )
    .await;
    for g in [by_type, by_id] {
        let versions: Vec<i32> = app
            .state
            .store
            .grant_wraps(g)
            .await
            .unwrap()
            .iter()
            .map(|w| w.version)
            .collect();
        assert!(
            versions.contains(&2),
            "grant {g} covers version 2: {versions:?}"
        );
    }
    // Once revoked, a new upload adds nothing to it.
    c.post(&format!("/me/grants/{by_type}/revoke"), json!({}))
        .await;
    c.upload(None, "business_license", licence_fields("撤销后公司"), None)
        .await;
    assert!(
        app.state
            .store
            .grant_wraps(by_type)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

//! Access requests: checked before the citizen sees them, previewed exactly, approved
//! (possibly narrowed) or denied.

use custodia::agencies::{self, Level, NewAgency};
use custodia::catalog::Tier;
use custodia::requests::{self, NewRequest};
use serde_json::{Value, json};

use crate::citizen_kit::{Citizen, licence_fields, pdf_bytes};
use crate::helpers::{Backend, assert_problem, both_backends, national_id, spawn_app};

both_backends!(
    a_request_is_previewed_narrowed_and_approved_or_denied,
    a_full_request_can_be_narrowed_to_chosen_fields
);

fn ask(national_id: String, tier: Tier, fields: &[&str], purpose_code: &str) -> NewRequest {
    NewRequest {
        national_id,
        document_types: vec!["business_license".into()],
        tier,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        purpose_code: purpose_code.into(),
        purpose: "设立登记材料核验".into(),
        legal_basis: None,
        duration_days: 30,
        retention_days: 90,
    }
}

async fn a_request_is_previewed_narrowed_and_approved_or_denied(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let created = agencies::create(
        &app.state,
        &NewAgency {
            name: "海淀区市场监管局",
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
    let agency = app.state.store.agency(created.id).await.unwrap();
    let c = Citizen::register(&app, &national_id(70), "Requested").await;
    let licence: Value = c
        .upload(
            None,
            "business_license",
            licence_fields("请求测试公司"),
            Some(("l.pdf", pdf_bytes(3000, "r"))),
        )
        .await
        .json()
        .await
        .unwrap();
    let licence = licence["id"].as_str().unwrap().to_owned();

    // Over-asking is refused before it reaches anyone.
    let over = requests::create(
        &app.state,
        &agency,
        &ask(national_id(70), Tier::Full, &[], "business_registration"),
        None,
        None,
    )
    .await;
    assert!(matches!(over, Err(custodia::error::Error::Forbidden(_))));
    // An unknown citizen gets the same answer as a known one.
    let unknown = requests::create(
        &app.state,
        &agency,
        &ask(national_id(71), Tier::Verify, &[], "business_registration"),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(unknown.1, "pending");

    let (id, status) = requests::create(
        &app.state,
        &agency,
        &ask(
            national_id(70),
            Tier::Fields,
            &["company_name", "business_scope"],
            "business_registration",
        ),
        Some("officer-7"),
        Some("HD-2026-0042"),
    )
    .await
    .unwrap();
    assert_eq!(status, "pending");

    let inbox: Value = c.get("/me/requests").await.json().await.unwrap();
    let list = inbox["requests"].as_array().unwrap();
    assert_eq!(list.len(), 1, "only this citizen's request");
    assert_eq!(list[0]["agency_name"], "海淀区市场监管局");
    assert_eq!(list[0]["case_id"], "HD-2026-0042");
    assert_eq!(list[0]["status"], "pending");

    // The preview is exactly what the agency would receive: the two asked fields, no file.
    let preview: Value = c
        .get(&format!("/me/requests/{id}/preview"))
        .await
        .json()
        .await
        .unwrap();
    let item = &preview[0];
    assert_eq!(item["document_id"], licence.as_str());
    let fields = item["fields"].as_object().unwrap();
    assert_eq!(fields.len(), 2);
    assert_eq!(fields["company_name"], "请求测试公司");
    assert!(fields.get("legal_representative").is_none());
    assert_eq!(item["file"], Value::Null);

    // Widening is refused; narrowing is allowed.
    for wider in [
        json!({ "tier": "full" }),
        json!({ "duration_days": 31 }),
        json!({ "fields": ["legal_representative"] }),
    ] {
        assert_problem(
            c.post(&format!("/me/requests/{id}/approve"), wider).await,
            422,
        )
        .await;
    }
    let approved = c
        .post(
            &format!("/me/requests/{id}/approve"),
            json!({ "fields": ["company_name"], "duration_days": 7 }),
        )
        .await;
    assert_eq!(approved.status(), 201);
    let grant: Value = approved.json().await.unwrap();
    assert_eq!(grant["tier"], "fields");
    assert_eq!(grant["fields"], json!(["company_name"]));
    assert_eq!(grant["retention_days"], 90);
    let inbox: Value = c.get("/me/requests").await.json().await.unwrap();
    assert_eq!(inbox["requests"][0]["status"], "approved");
    assert_eq!(inbox["requests"][0]["grant_id"], grant["id"]);
    assert_problem(
        c.post(&format!("/me/requests/{id}/approve"), json!({}))
            .await,
        409,
    )
    .await;

    // Deny another; an expired one can no longer be approved.
    let (second, _) = requests::create(
        &app.state,
        &agency,
        &ask(national_id(70), Tier::Verify, &[], "business_registration"),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        c.post(&format!("/me/requests/{second}/deny"), json!({}))
            .await
            .status(),
        204
    );
    assert_problem(
        c.post(&format!("/me/requests/{second}/deny"), json!({}))
            .await,
        409,
    )
    .await;
    let (third, _) = requests::create(
        &app.state,
        &agency,
        &ask(national_id(70), Tier::Verify, &[], "business_registration"),
        None,
        None,
    )
    .await
    .unwrap();
    app.clock.advance(time::Duration::days(15));
    let mut c = c;
    c.login().await;
    assert_eq!(c.unlock(crate::citizen_kit::PASSPHRASE).await.status(), 200);
    assert_problem(
        c.post(&format!("/me/requests/{third}/approve"), json!({}))
            .await,
        409,
    )
    .await;
    // Another citizen cannot see or answer it.
    let other = Citizen::register(&app, &national_id(72), "Other").await;
    assert_problem(
        other
            .post(&format!("/me/requests/{third}/deny"), json!({}))
            .await,
        404,
    )
    .await;
    app.stop().await;
}

/// A request for everything may be answered with some fields only: the citizen names them,
/// and each must be a field of an asked type.
async fn a_full_request_can_be_narrowed_to_chosen_fields(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let created = agencies::create(
        &app.state,
        &NewAgency {
            name: "北京市税务局",
            level: Level::Provincial,
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
    let agency = app.state.store.agency(created.id).await.unwrap();
    let c = Citizen::register(&app, &national_id(72), "Narrowed").await;
    c.upload(
        None,
        "business_license",
        licence_fields("全量收窄公司"),
        Some(("l.pdf", pdf_bytes(2000, "n"))),
    )
    .await;
    let (id, _) = requests::create(
        &app.state,
        &agency,
        &ask(national_id(72), Tier::Full, &[], "tax_filing"),
        None,
        None,
    )
    .await
    .unwrap();
    let approve = format!("/me/requests/{id}/approve");
    for bad in [
        json!({ "tier": "fields" }),
        json!({ "tier": "fields", "fields": [] }),
        json!({ "tier": "fields", "fields": ["company_name", "no_such_field"] }),
    ] {
        let problem = assert_problem(c.post(&approve, bad.clone()).await, 422).await;
        assert!(
            problem["detail"].as_str().unwrap().contains("fields"),
            "{bad}: {problem}"
        );
    }
    let grant: Value = c
        .post(
            &approve,
            json!({ "tier": "fields", "fields": ["company_name", "business_scope"], "duration_days": 7 }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(grant["tier"], "fields");
    assert_eq!(grant["fields"], json!(["business_scope", "company_name"]));
}

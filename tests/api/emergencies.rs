//! Break-glass (SPEC §6): an emergency agency reads, without a consent given at the time,
//! only what the citizen made emergency-available in advance; every use is recorded before
//! any read, reviewed by an auditor and disclosed to the citizen (at once, or after a
//! recorded delay); and the operator's keys open exactly those documents (G5).

use custodia::agencies::Level;
use custodia::ids::{CitizenId, DocumentId};
use custodia_crypto::{Aad, DataKey, SymmetricKey, VaultKey, envelope, wrap};
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::auditors::enrol_at;
use crate::citizen_kit::{Citizen, licence_fields};
use crate::helpers::{
    Backend, TestApp, assert_problem, both_backends, events, national_id, spawn_app,
};

both_backends!(
    an_emergency_read_of_an_available_type_is_recorded_and_disclosed,
    a_delayed_disclosure_shows_nothing_until_its_day_and_auditors_judge_it,
    withdrawing_availability_ends_a_live_emergency_grant,
    the_operators_keys_open_exactly_the_emergency_available_documents,
);

fn id_card_fields(name: &str) -> Value {
    json!({
        "name": name, "gender": "female", "birth_date": "1980-01-01", "address": "北京市东城区",
        "id_number": "11010519800101002X", "issuing_authority": "北京市公安局", "valid_from": "2015-06-01"
    })
}

/// A provincial agency registered for emergencies (what `custodia agency create …
/// --emergency` makes).
async fn emergency_agency(app: &TestApp, name: &str) -> Agency {
    let created = custodia::agencies::create(
        &app.state,
        &custodia::agencies::NewAgency {
            name,
            level: Level::Provincial,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: false,
            emergency: true,
        },
    )
    .await
    .unwrap();
    Agency {
        id: created.id.to_string(),
        key: created.api_key.to_string(),
        base: app.base.clone(),
        http: reqwest::Client::new(),
    }
}

/// A citizen with an ID card (emergency-available) and a business licence (not).
/// Returns (citizen, card id, licence id).
async fn prepared(app: &TestApp, n: u32) -> (Citizen, String, String) {
    let c = Citizen::register(app, &national_id(n), "Patient").await;
    let card: Value = c
        .upload(None, "resident_id", id_card_fields("王芳"), None)
        .await
        .json()
        .await
        .unwrap();
    let card = card["id"].as_str().unwrap().to_owned();
    let licence = c.licence("急救公司", None).await;
    let set = c
        .put(
            "/me/emergency",
            json!({ "document_types": ["resident_id"] }),
        )
        .await;
    assert_eq!(set.status(), 200, "emergency types set");
    let set: Value = set.json().await.unwrap();
    assert_eq!(set["document_types"], json!(["resident_id"]));
    (c, card, licence)
}

fn break_glass(national_id: &str, types: &[&str], delay_days: i64) -> Value {
    json!({
        "national_id": national_id,
        "document_types": types,
        "tier": "fields",
        "fields": ["name", "birth_date"],
        "justification": "Unconscious patient brought in by ambulance; identity needed for treatment",
        "legal_basis": "Emergency medical treatment regulation, art. 12",
        "case": "CASE-2026-001",
        "duration_minutes": 60,
        "disclosure_delay_days": delay_days,
    })
}

async fn an_emergency_read_of_an_available_type_is_recorded_and_disclosed(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (mut c, card, _licence) = prepared(&app, 900).await;
    let er = emergency_agency(&app, "省急救中心").await;

    // The citizen's choice is checked: never a `none`-class type, never an unknown one.
    assert_problem(
        c.put(
            "/me/emergency",
            json!({ "document_types": ["medical_record"] }),
        )
        .await,
        422,
    )
    .await;
    assert_problem(
        c.put("/me/emergency", json!({ "document_types": ["nothing"] }))
            .await,
        422,
    )
    .await;
    let kept: Value = c.get("/me/emergency").await.json().await.unwrap();
    assert_eq!(kept["document_types"], json!(["resident_id"]), "unchanged");

    // Only agencies registered for it, and only at provincial level or above.
    let ordinary = Agency::create(&app, "普通局", Level::National).await;
    assert_problem(
        ordinary
            .post(
                "/api/v1/emergency-access",
                break_glass(&national_id(900), &["resident_id"], 0),
            )
            .await,
        403,
    )
    .await;
    let too_low = custodia::agencies::create(
        &app.state,
        &custodia::agencies::NewAgency {
            name: "县医院",
            level: Level::County,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: false,
            emergency: true,
        },
    )
    .await;
    assert!(too_low.is_err(), "a county agency cannot break the glass");

    // Malformed attempts change nothing.
    let mut long = break_glass(&national_id(900), &["resident_id"], 0);
    long["duration_minutes"] = json!(241);
    assert_problem(er.post("/api/v1/emergency-access", long).await, 422).await;
    let mut other_case = break_glass(&national_id(900), &["resident_id"], 0);
    other_case["case"] = json!("ANOTHER-CASE");
    assert_problem(er.post("/api/v1/emergency-access", other_case).await, 422).await;
    let mut late = break_glass(&national_id(900), &["resident_id"], 0);
    late["disclosure_delay_days"] = json!(31);
    assert_problem(er.post("/api/v1/emergency-access", late).await, 422).await;
    let headless = er
        .http
        .post(format!("{}/api/v1/emergency-access", app.base))
        .bearer_auth(&er.key)
        .json(&break_glass(&national_id(900), &["resident_id"], 0))
        .send()
        .await
        .unwrap();
    assert_problem(headless, 400).await;
    assert_eq!(
        app.state.store.all_emergency_wraps().await.unwrap().len(),
        1,
        "one document wrapped for emergencies"
    );

    // No oracle: a type she did not make available answers as a person nobody registered.
    let verify_only = |nid: &str, types: &[&str]| {
        let mut body = break_glass(nid, types, 0);
        body["tier"] = json!("verify");
        body["fields"] = json!([]);
        body
    };
    let unavailable = assert_problem(
        er.post(
            "/api/v1/emergency-access",
            verify_only(&national_id(900), &["business_license"]),
        )
        .await,
        404,
    )
    .await;
    let unknown = assert_problem(
        er.post(
            "/api/v1/emergency-access",
            verify_only(&national_id(999), &["resident_id"]),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(unavailable, unknown, "the same answer");

    // Breaking the glass: a grant at once, recorded with justification, officer and case.
    let made = er
        .post(
            "/api/v1/emergency-access",
            break_glass(&national_id(900), &["resident_id", "business_license"], 0),
        )
        .await;
    assert_eq!(made.status(), 201);
    let grant: Value = made.json().await.unwrap();
    assert_eq!(grant["emergency"], true);
    assert_eq!(
        grant["document_types"],
        json!(["resident_id"]),
        "only what she made available"
    );
    let g = grant["id"].as_str().unwrap().to_owned();
    let recorded: Vec<_> = events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "emergency.access" && e.outcome == "ok")
        .collect();
    assert_eq!(recorded.len(), 1);
    let e = &recorded[0];
    assert_eq!(e.officer_id.as_deref(), Some("officer-7"));
    assert_eq!(e.case_id.as_deref(), Some("CASE-2026-001"));
    assert!(
        e.purpose
            .as_deref()
            .unwrap()
            .contains("Unconscious patient")
    );
    assert!(e.detail.as_deref().unwrap().contains("art. 12"));
    assert_eq!(e.grant_id.map(|g| g.to_string()), Some(g.clone()));

    // Read like any grant: the card's granted fields, and nothing else of hers.
    let listed: Value = er
        .read(&format!("/api/v1/grants/{g}/documents"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["documents"].as_array().unwrap().len(), 1);
    let read = er
        .read(&format!("/api/v1/grants/{g}/documents/{card}"))
        .await;
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["fields"]["name"], "王芳");
    assert!(
        read["fields"].get("address").is_none(),
        "only granted fields"
    );

    // One emergency grant per person per hour for an agency.
    assert_problem(
        er.post(
            "/api/v1/emergency-access",
            break_glass(&national_id(900), &["resident_id"], 0),
        )
        .await,
        429,
    )
    .await;

    // The citizen is told at once: her emergency page, her grants, her trail.
    let mine: Value = c.get("/me/emergency").await.json().await.unwrap();
    assert_eq!(mine["accesses"].as_array().unwrap().len(), 1);
    assert_eq!(mine["accesses"][0]["agency_name"], "省急救中心");
    assert_eq!(mine["accesses"][0]["reads"], 1);
    let grants: Value = c.get("/me/grants").await.json().await.unwrap();
    assert!(
        grants["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == g.as_str() && x["emergency"] == true)
    );
    let trail: Value = c.get("/me/activity").await.json().await.unwrap();
    let actions: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"emergency.access"));
    assert!(actions.contains(&"document.read"));
    let home = c.get("/").await.text().await.unwrap();
    assert!(home.contains("省急救中心"), "the home page tells her");

    // The grant ends at its time, and is never extended.
    app.clock.advance(time::Duration::minutes(61));
    assert_problem(
        er.read(&format!("/api/v1/grants/{g}/documents/{card}"))
            .await,
        403,
    )
    .await;
    c.login().await;
    let after: Value = c.get("/me/emergency").await.json().await.unwrap();
    assert_eq!(after["accesses"][0]["status"], "expired");
}

/// Whether nothing of emergency grant `g` shows on the citizen's side: her emergency page,
/// her grants, her trail, her home page.
async fn hidden(c: &Citizen, g: &str) -> bool {
    let mine: Value = c.get("/me/emergency").await.json().await.unwrap();
    let grants: Value = c.get("/me/grants").await.json().await.unwrap();
    let trail: Value = c.get("/me/activity").await.json().await.unwrap();
    let home = c.get("/").await.text().await.unwrap();
    mine["accesses"].as_array().unwrap().is_empty()
        && !grants["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == g)
        && !trail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["grant_id"] == g)
        && !home.contains("省公安厅")
}

async fn a_delayed_disclosure_shows_nothing_until_its_day_and_auditors_judge_it(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (mut c, card, _) = prepared(&app, 910).await;
    let police = emergency_agency(&app, "省公安厅").await;
    let made = police
        .post(
            "/api/v1/emergency-access",
            break_glass(&national_id(910), &["resident_id"], 10),
        )
        .await;
    assert_eq!(made.status(), 201);
    let g = made.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        police
            .read(&format!("/api/v1/grants/{g}/documents/{card}"))
            .await
            .status(),
        200
    );

    // Nothing of it shows on her side while the delay runs.
    assert!(hidden(&c, &g).await, "not disclosed before its day");

    // Auditors see it at once, unreviewed.
    let link = custodia::auditors::invite(&app.state, "复核员甲")
        .await
        .unwrap();
    let auditor = enrol_at(&app.base, &link).await.ok().unwrap();
    let queue: Value = auditor
        .get("/api/v1/audit/emergencies")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["accesses"].as_array().unwrap().len(), 1);
    assert_eq!(queue["accesses"][0]["grant_id"], g.as_str());
    assert_eq!(queue["accesses"][0]["overdue"], false);
    assert_eq!(queue["agencies"][0]["unreviewed"], 1);

    // A week on, unreviewed: flagged.
    app.clock.advance(time::Duration::days(8));
    let link = custodia::auditors::invite(&app.state, "复核员乙")
        .await
        .unwrap();
    let auditor = enrol_at(&app.base, &link).await.ok().unwrap();
    let queue: Value = auditor
        .get("/api/v1/audit/emergencies")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["accesses"][0]["overdue"], true);
    let console = auditor.get("/audit").await.text().await.unwrap();
    assert!(
        console.contains("emergency-use overdue"),
        "the console marks it"
    );
    assert!(console.contains(&g), "and lists it for review");

    // The verdict: once, with a note, recorded.
    assert_problem(
        auditor
            .post(
                &format!("/api/v1/audit/emergencies/{g}/review"),
                json!({ "verdict": "maybe", "note": "not a verdict at all" }),
            )
            .await,
        422,
    )
    .await;
    assert_problem(
        auditor
            .post(
                &format!("/api/v1/audit/emergencies/{g}/review"),
                json!({ "verdict": "unjustified", "note": "short" }),
            )
            .await,
        422,
    )
    .await;
    assert_problem(
        auditor
            .post(
                &format!("/api/v1/audit/emergencies/{}/review", uuid::Uuid::new_v4()),
                json!({ "verdict": "justified", "note": "no such access anywhere" }),
            )
            .await,
        404,
    )
    .await;
    let judged = auditor
        .post(
            &format!("/api/v1/audit/emergencies/{g}/review"),
            json!({ "verdict": "unjustified", "note": "No emergency: the person was reachable by phone." }),
        )
        .await;
    assert_eq!(judged.status(), 200);
    let judged: Value = judged.json().await.unwrap();
    assert_eq!(judged["verdict"], "unjustified");
    assert_eq!(judged["overdue"], false);
    assert_problem(
        auditor
            .post(
                &format!("/api/v1/audit/emergencies/{g}/review"),
                json!({ "verdict": "justified", "note": "changing my mind later on" }),
            )
            .await,
        409,
    )
    .await;
    let queue: Value = auditor
        .get("/api/v1/audit/emergencies?all=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(queue["agencies"][0]["unjustified"], 1, "counted per agency");
    assert_eq!(queue["agencies"][0]["unreviewed"], 0);
    let reviews: Vec<_> = events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "emergency.review")
        .collect();
    assert_eq!(reviews.len(), 1);
    assert!(
        reviews[0]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("unjustified: ")
    );

    // Still hidden from her on day 8 …
    c.login().await;
    assert!(hidden(&c, &g).await, "still within the delay");
    // … and told by itself once the delay is over.
    app.clock.advance(time::Duration::days(3));
    c.login().await;
    let mine: Value = c.get("/me/emergency").await.json().await.unwrap();
    assert_eq!(mine["accesses"].as_array().unwrap().len(), 1);
    assert_eq!(mine["accesses"][0]["verdict"], "unjustified");
    let trail: Value = c.get("/me/activity").await.json().await.unwrap();
    let actions: Vec<&str> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["grant_id"] == g.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"emergency.access"));
    assert!(actions.contains(&"document.read"));
    assert!(actions.contains(&"emergency.review"));
    assert!(c.get("/").await.text().await.unwrap().contains("省公安厅"));
}

async fn withdrawing_availability_ends_a_live_emergency_grant(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (c, card, _) = prepared(&app, 920).await;
    let er = emergency_agency(&app, "省急救中心").await;
    let made = er
        .post(
            "/api/v1/emergency-access",
            break_glass(&national_id(920), &["resident_id"], 0),
        )
        .await;
    assert_eq!(made.status(), 201);
    let g = made.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/grants/{g}/documents/{card}");
    assert_eq!(er.read(&path).await.status(), 200);

    // Withdrawing needs no passkey and no unlocked vault, and ends the grant at once.
    c.post("/vault/lock", json!({})).await;
    let withdrawn = c
        .put("/me/emergency", json!({ "document_types": [] }))
        .await;
    assert_eq!(withdrawn.status(), 200);
    let withdrawn: Value = withdrawn.json().await.unwrap();
    assert_eq!(withdrawn["document_types"], json!([]));
    assert_eq!(withdrawn["ended_grants"], 1);
    assert_problem(er.read(&path).await, 403).await;
    assert!(
        app.state
            .store
            .all_emergency_wraps()
            .await
            .unwrap()
            .is_empty(),
        "the emergency wraps are destroyed"
    );
    assert_eq!(
        app.state
            .store
            .grant_wraps(g.parse().unwrap())
            .await
            .unwrap()
            .len(),
        0,
        "and the grant's keys"
    );
    // Nothing is available any more: the answer for nobody.
    assert_problem(
        er.post(
            "/api/v1/emergency-access",
            break_glass(&national_id(920), &["resident_id"], 0),
        )
        .await,
        404,
    )
    .await;
    // Adding a type back needs the unlocked vault.
    assert_problem(
        c.put(
            "/me/emergency",
            json!({ "document_types": ["resident_id"] }),
        )
        .await,
        423,
    )
    .await;
}

async fn the_operators_keys_open_exactly_the_emergency_available_documents(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (c, card, licence) = prepared(&app, 930).await;
    // A second card stored after the choice is wrapped too; a register is not.
    let later: Value = c
        .upload(None, "resident_id", id_card_fields("王芳二"), None)
        .await
        .json()
        .await
        .unwrap();
    let later = later["id"].as_str().unwrap().to_owned();
    let register: Value = c
        .upload(None, "business_license", licence_fields("另一公司"), None)
        .await
        .json()
        .await
        .unwrap();
    let register = register["id"].as_str().unwrap().to_owned();
    let owner: CitizenId = c.citizen_id.parse().unwrap();
    let keys = &app.state.keys;

    // With the database and every service key, try to open each document's fields.
    let wraps = app.state.store.all_emergency_wraps().await.unwrap();
    let mut opened = Vec::new();
    for id in [&card, &later, &licence, &register] {
        let document: DocumentId = id.parse().unwrap();
        let versions = app.state.store.document_versions(document).await.unwrap();
        let v = &versions[0];
        let mut keys_to_try: Vec<DataKey> = Vec::new();
        for w in wraps.iter().filter(|w| w.document_id == document) {
            if let Ok(k) = wrap::unwrap_key(
                &keys.emergency_wrap,
                &w.wrapped_key,
                &custodia::sealing::emergency_data_key_aad(document, w.version, owner),
            ) {
                keys_to_try.push(k);
            }
        }
        // The vault wrap does not open with any service key standing in for the vault.
        for service in [
            keys.grant_wrap.expose(),
            keys.blind_index.expose(),
            keys.identity_escrow.expose(),
            keys.emergency_wrap.expose(),
        ] {
            let as_vault = VaultKey::from_bytes(*service);
            let unwrapped: Result<DataKey, _> = wrap::unwrap_key(
                &as_vault,
                v.data_key_wrap.as_deref().unwrap(),
                &Aad::new("data-key")
                    .with("document", document.as_bytes())
                    .with("version", v.version.to_be_bytes())
                    .with("owner", owner.as_bytes()),
            );
            if let Ok(k) = unwrapped {
                keys_to_try.push(k);
            }
        }
        let opens = keys_to_try.iter().any(|k| {
            envelope::open(
                k,
                &custodia::sealing::document_aad("document-meta", document, v.version, owner),
                v.meta_enc.as_deref().unwrap(),
            )
            .is_ok()
        });
        if opens {
            opened.push(id.clone());
        }
    }
    assert_eq!(
        opened,
        vec![card.clone(), later.clone()],
        "exactly the emergency-available documents"
    );
}

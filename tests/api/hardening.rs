//! Hardening (issue 18): what an attacker sends cannot turn into formulas in an auditor's
//! spreadsheet or into junk in every event of a request.

use custodia::agencies::Level;
use custodia::ids::GrantId;
use serde_json::json;

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, licence_fields, pdf_bytes};
use crate::helpers::{Backend, TestApp, TestEnv, both_backends, national_id, spawn_app};

both_backends!(
    a_retried_request_with_the_same_idempotency_key_creates_one,
    a_retried_deposit_stores_one_and_a_retried_enrolment_code_is_never_replayed,
    a_change_whose_record_cannot_be_written_does_not_stand,
    an_account_change_whose_record_cannot_be_written_does_not_stand,
    two_approvals_racing_make_one_grant,
    a_citizen_quota_is_answered_413_naming_it,
    a_disabled_auditor_is_out_at_once_and_auditor_sign_in_tells_no_names,
    deposits_answer_alike_for_registered_and_unregistered_ids,
    sign_in_and_registration_start_answer_alike_for_unknown_ids,
    a_hostile_officer_id_opens_as_text_and_a_junk_request_id_is_replaced,
    destroyed_grant_keys_are_gone_from_the_database_files,
    disabling_an_agency_ends_its_grants,
    a_replaced_version_takes_its_grant_wraps_with_it,
);

/// The whole trail as `custodia audit export` writes it.
async fn exported(app: &TestApp, format: custodia::audit::Format) -> String {
    let mut out = Vec::new();
    custodia::audit::export(&app.state.store, None, None, format, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// Every stored key-wrap byte string of `grant`: the grant key's wrap and its data-key wraps.
async fn wrap_bytes(app: &TestApp, grant: &str) -> Vec<Vec<u8>> {
    let id: GrantId = grant.parse().unwrap();
    let mut out: Vec<Vec<u8>> = app
        .state
        .store
        .grant_wraps(id)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.wrapped_key)
        .collect();
    if let Some(w) = app.state.store.grant(id).await.unwrap().grant_key_wrap {
        out.push(w);
    }
    out
}

/// The bytes of the SQLite database and its write-ahead log, as a thief of the disk
/// would read them.
fn database_files(env: &TestEnv) -> Vec<u8> {
    let mut all = Vec::new();
    for name in ["custodia.db", "custodia.db-wal", "custodia.db-journal"] {
        if let Ok(bytes) = std::fs::read(env.data_dir().join(name)) {
            all.extend_from_slice(&bytes);
        }
    }
    all
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

async fn full_grant(c: &Citizen, agency: &Agency, doc: &str, days: i64) -> String {
    c.grant_to(
        &agency.id,
        json!({ "document_ids": [doc], "tier": "full", "purpose": "设立登记材料核验", "duration_days": days }),
    )
    .await
}

/// After a revoke and after an expiry, the destroyed wraps are in no file of the database
/// (SQLite: `secure_delete` and a truncated log), and in no row on either engine.
async fn destroyed_grant_keys_are_gone_from_the_database_files(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "市场监督管理局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(700), "Shred").await;
    let doc = c
        .licence("粉碎科技有限公司", Some(pdf_bytes(4096, "shred")))
        .await;

    let revoked = full_grant(&c, &agency, &doc, 7).await;
    let wraps = wrap_bytes(&app, &revoked).await;
    assert_eq!(wraps.len(), 2, "a grant key and one data-key wrap");
    if backend == Backend::Sqlite {
        let files = database_files(&env);
        assert!(
            wraps.iter().all(|w| holds(&files, w)),
            "the control: the live wraps are on disk before the revoke"
        );
    }
    let r = c
        .post(&format!("/me/grants/{revoked}/revoke"), json!({}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(wrap_bytes(&app, &revoked).await.is_empty());
    if backend == Backend::Sqlite {
        let files = database_files(&env);
        for w in &wraps {
            assert!(!holds(&files, w), "a revoked wrap is still on disk");
        }
    }

    // Expiry ends the grant at its time, by the timer, without any request.
    let expiring = full_grant(&c, &agency, &doc, 1).await;
    let wraps = wrap_bytes(&app, &expiring).await;
    assert_eq!(wraps.len(), 2);
    app.clock
        .advance(time::Duration::days(1) + time::Duration::seconds(1));
    let id: GrantId = expiring.parse().unwrap();
    let mut ended = false;
    for _ in 0..100 {
        if app
            .state
            .store
            .grant(id)
            .await
            .unwrap()
            .grant_key_wrap
            .is_none()
        {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ended, "the expiry timer ended the grant");
    assert_eq!(
        app.state.store.grant(id).await.unwrap().status,
        custodia::status::GrantStatus::Expired
    );
    assert!(wrap_bytes(&app, &expiring).await.is_empty());
    if backend == Backend::Sqlite {
        // The timer scrubs right after the commit that ended the grant.
        let mut clean = false;
        for _ in 0..100 {
            let files = database_files(&env);
            if wraps.iter().all(|w| !holds(&files, w)) {
                clean = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(clean, "an expired wrap is still on disk");
    }
    app.stop().await;
}

async fn disabling_an_agency_ends_its_grants(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "市场监督管理局", Level::Provincial).await;
    let other = Agency::create(&app, "税务局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(701), "Disabled").await;
    let doc = c.licence("停用科技有限公司", None).await;
    let gone = full_grant(&c, &agency, &doc, 7).await;
    let kept = full_grant(&c, &other, &doc, 7).await;
    custodia::agencies::disable(&app.state, agency.id.parse().unwrap())
        .await
        .unwrap();
    assert!(
        wrap_bytes(&app, &gone).await.is_empty(),
        "its keys are destroyed"
    );
    assert_eq!(
        wrap_bytes(&app, &kept).await.len(),
        2,
        "another agency's grant stands"
    );
    assert_eq!(
        app.state
            .store
            .grant(gone.parse().unwrap())
            .await
            .unwrap()
            .status,
        custodia::status::GrantStatus::Revoked
    );
    let activity: serde_json::Value = c
        .get("/me/activity?action=grant.revoke")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        activity["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["detail"] == "the agency was disabled"),
        "{activity:#}"
    );
    app.stop().await;
}

async fn a_replaced_version_takes_its_grant_wraps_with_it(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "市场监督管理局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(702), "Replace").await;
    let doc = c.licence("旧版科技有限公司", None).await;
    let grant = c
        .grant_to(
            &agency.id,
            json!({ "document_types": ["business_license"], "tier": "full", "purpose": "设立登记材料核验", "duration_days": 7 }),
        )
        .await;
    let before = app
        .state
        .store
        .grant_wraps(grant.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        before.iter().map(|w| w.version).collect::<Vec<_>>(),
        vec![1]
    );
    let r = c
        .upload(
            Some(&doc),
            "business_license",
            licence_fields("新版科技有限公司"),
            None,
        )
        .await;
    assert!(r.status().is_success(), "{}", r.status());
    let after = app
        .state
        .store
        .grant_wraps(grant.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|w| w.version).collect::<Vec<_>>(),
        vec![2],
        "the grant holds the current version only"
    );
    app.stop().await;
}

async fn a_hostile_officer_id_opens_as_text_and_a_junk_request_id_is_replaced(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "市场监督管理局", Level::Municipal).await;
    let grant = uuid::Uuid::new_v4();
    let junk_id = "x".repeat(65);
    let refused = agency
        .http
        .get(app.url(&format!("/api/v1/grants/{grant}/documents")))
        .bearer_auth(&agency.key)
        .header(
            "x-officer-id",
            "=HYPERLINK(\"http://evil.example\",\"click\")",
        )
        .header("x-case-id", "+CASE-1")
        .header("x-request-id", &junk_id)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let answered_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&answered_id).is_ok(), "{answered_id}");

    // A good client id is kept.
    let kept = agency
        .http
        .get(app.url(&format!("/api/v1/grants/{grant}/documents")))
        .bearer_auth(&agency.key)
        .header("x-officer-id", "officer-7")
        .header("x-case-id", "CASE-2")
        .header("x-request-id", "trace-0af7651916cd43dd8448eb211c80319c")
        .send()
        .await
        .unwrap();
    assert_eq!(
        kept.headers()["x-request-id"],
        "trace-0af7651916cd43dd8448eb211c80319c"
    );

    let csv = exported(&app, custodia::audit::Format::Csv).await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let hostile = rows
        .iter()
        .find(|r| r[column("officer_id")].contains("HYPERLINK"))
        .expect("the refused read is exported");
    assert_eq!(
        &hostile[column("officer_id")],
        "'=HYPERLINK(\"http://evil.example\",\"click\")",
        "a formula opens as text"
    );
    assert_eq!(&hostile[column("case_id")], "'+CASE-1");
    assert_eq!(
        &hostile[column("request_id")],
        answered_id,
        "the junk id was replaced"
    );
    assert!(!csv.contains(&junk_id));
    assert!(
        rows.iter()
            .any(|r| &r[column("request_id")] == "trace-0af7651916cd43dd8448eb211c80319c")
    );
    // JSON lines keep the values exactly as recorded.
    assert!(
        exported(&app, custodia::audit::Format::Jsonl)
            .await
            .contains("\"officer_id\":\"=HYPERLINK(")
    );
    app.stop().await;
}

/// The parts of an answer a caller sees, without the ids that differ anyway.
async fn answer(r: reqwest::Response) -> (u16, Option<serde_json::Value>) {
    let status = r.status().as_u16();
    let mut body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    if let Some(map) = body.as_object_mut() {
        map.remove("id");
    }
    (status, Some(body))
}

/// SPEC G4 and no oracle: whatever is wrong with a deposit — its digest, its file's kind,
/// its size — the answer is the same whether the national ID has an account or not.
async fn deposits_answer_alike_for_registered_and_unregistered_ids(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.vars
        .insert("CUSTODIA_MAX_UPLOAD_BYTES".into(), (64 * 1024).to_string());
    let app = env.start().await.unwrap();
    let (issuer, key) = Agency::issuer(&app, "国家税务总局北京市税务局").await;
    let registered = Citizen::register(&app, &national_id(710), "Known").await;
    let unregistered = national_id(711);

    let send = |nid: String, sha: Option<String>, file: Option<Vec<u8>>| {
        let doc = crate::agency_api::sign_deposit(
            &key,
            crate::agency_api::clearance(&nid, sha.as_deref()),
        );
        let mut form = reqwest::multipart::Form::new().text("document", doc.to_string());
        if let Some(bytes) = file {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name("完税证明.pdf"),
            );
        }
        issuer
            .http
            .post(app.url("/api/v1/issued-documents"))
            .bearer_auth(&issuer.key)
            .multipart(form)
            .send()
    };
    let sha = |b: &[u8]| custodia_crypto::digest::hex(&custodia_crypto::digest::sha256(b));
    let pdf = pdf_bytes(5000, "clearance");
    let html = b"<html><script>alert(1)</script></html>".repeat(20);
    let huge = pdf_bytes(100 * 1024, "huge");
    type Case = (&'static str, Option<String>, Option<Vec<u8>>, u16);
    let cases: Vec<Case> = vec![
        ("a good deposit", Some(sha(&pdf)), Some(pdf.clone()), 202),
        (
            "a wrong digest",
            Some(sha(b"something else")),
            Some(pdf.clone()),
            422,
        ),
        ("not a PDF", Some(sha(&html)), Some(html.clone()), 415),
        ("too large", Some(sha(&huge)), Some(huge.clone()), 413),
        ("a digest without a file", Some(sha(&pdf)), None, 422),
    ];
    for (what, digest, file, status) in cases {
        let known = answer(
            send(registered.national_id.clone(), digest.clone(), file.clone())
                .await
                .unwrap(),
        )
        .await;
        let unknown = answer(send(unregistered.clone(), digest, file).await.unwrap()).await;
        assert_eq!(known.0, status, "{what}: {known:?}");
        assert_eq!(known, unknown, "{what}: the answers differ");
    }
    // Only the good deposit for the registered ID was kept.
    let docs = app
        .state
        .store
        .citizen_documents(registered.citizen_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(docs.len(), 1);
    app.stop().await;
}

async fn sign_in_and_registration_start_answer_alike_for_unknown_ids(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let known = Citizen::register(&app, &national_id(720), "Known").await;
    let unknown = national_id(721);
    let start = |nid: String| {
        let http = app.new_client();
        let url = app.url("/auth/login/start");
        async move {
            let r = http
                .post(url)
                .json(&json!({ "national_id": nid }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            (http, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let shape = |v: &serde_json::Value| {
        let pk = &v["publicKey"];
        let mut keys: Vec<String> = pk.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (
            keys,
            pk["allowCredentials"].as_array().unwrap().len(),
            pk["userVerification"].clone(),
        )
    };
    let (_, real) = start(known.national_id.clone()).await;
    let (http, fake) = start(unknown.clone()).await;
    assert_eq!(shape(&real), shape(&fake), "{real:#} / {fake:#}");
    let (_, again) = start(unknown.clone()).await;
    assert_eq!(
        fake["publicKey"]["allowCredentials"], again["publicKey"]["allowCredentials"],
        "an unknown ID names the same credential every time, as a real one does"
    );
    assert_ne!(
        fake["publicKey"]["allowCredentials"],
        start(national_id(722)).await.1["publicKey"]["allowCredentials"],
        "and a different one for another ID"
    );
    // A real assertion — another account's — sent to finish the unknown ID's ceremony
    // fails as a wrong passkey does.
    let mut known = known;
    let assertion = known.assertion().await;
    let r = http
        .post(app.url("/auth/login/finish"))
        .json(&json!({ "credential": assertion }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Registration without a code says the same for an ID with and without an account.
    let reg = |nid: String| {
        let http = app.new_client();
        let url = app.url("/auth/register/start");
        async move {
            answer(
                http.post(url)
                    .json(&json!({ "national_id": nid, "display_name": "Someone" }))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let with_account = reg(known.national_id.clone()).await;
    assert_eq!(with_account.0, 422);
    assert_eq!(with_account, reg(unknown).await);
    app.stop().await;
}

async fn a_citizen_quota_is_answered_413_naming_it(backend: Backend) {
    let mut env = TestEnv::new(backend).await;
    env.vars.insert("CUSTODIA_QUOTA_MIB".into(), "1".into());
    let app = env.start().await.unwrap();
    let c = Citizen::register(&app, &national_id(730), "Quota").await;
    c.licence("配额一号公司", Some(pdf_bytes(600 * 1024, "first")))
        .await;
    let over = c
        .upload(
            None,
            "business_license",
            licence_fields("配额二号公司"),
            Some(("second.pdf", pdf_bytes(600 * 1024, "second"))),
        )
        .await;
    let problem = crate::helpers::assert_problem(over, 413).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("quota of 1 MiB"),
        "{problem}"
    );
    let docs = app
        .state
        .store
        .citizen_documents(c.citizen_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(docs.len(), 1, "nothing was stored over the quota");
    // A document without a file still fits.
    c.licence("配额三号公司", None).await;
    app.stop().await;
}

async fn a_disabled_auditor_is_out_at_once_and_auditor_sign_in_tells_no_names(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let link = custodia::auditors::invite(&app.state, "李审计")
        .await
        .unwrap();
    let auditor = crate::auditors::enrol_at(&app.base, &link)
        .await
        .unwrap_or_else(|_| panic!("enrol"));
    assert_eq!(auditor.get("/api/v1/audit/events").await.status(), 200);

    // Sign-in start says the same for a name that exists and one that does not.
    let start = |name: &'static str| {
        let http = app.new_client();
        let url = app.url("/audit/auth/login/start");
        async move {
            let r = http
                .post(url)
                .json(&json!({ "name": name }))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            let n = body["publicKey"]["allowCredentials"]
                .as_array()
                .map(Vec::len);
            (status, n)
        }
    };
    assert_eq!(start("李审计").await, (200, Some(1)));
    assert_eq!(start("王不存在").await, (200, Some(1)));

    let id = app
        .state
        .store
        .auditor_by_name("李审计")
        .await
        .unwrap()
        .unwrap()
        .id;
    custodia::auditors::disable(&app.state, id).await.unwrap();
    assert_eq!(
        auditor.get("/api/v1/audit/events").await.status(),
        401,
        "the session ended with the account"
    );
    assert_eq!(
        start("李审计").await,
        (200, Some(1)),
        "and its name is now unknown"
    );
    assert!(custodia::auditors::disable(&app.state, id).await.is_err());
    app.stop().await;
}

/// SPEC G2/G8: a change and its record commit together. With the trail's outbox made
/// unwritable, a deposit and an access request are refused, and nothing of them stands.
async fn a_change_whose_record_cannot_be_written_does_not_stand(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (issuer, key) = Agency::issuer(&app, "国家税务总局北京市税务局").await;
    let asker = Agency::create(&app, "市场监督管理局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(740), "Recorded").await;
    let deposit =
        crate::agency_api::sign_deposit(&key, crate::agency_api::clearance(&c.national_id, None));
    // The control: with the trail writable both work.
    assert_eq!(
        issuer
            .post("/api/v1/issued-documents", deposit.clone())
            .await
            .status(),
        202
    );
    assert_eq!(asker.ask(&c.national_id, "verify", &[]).await.status(), 201);

    // A grant to revoke, given while the trail is writable.
    let doc = c.licence("留痕公司", None).await;
    let grant = full_grant(&c, &asker, &doc, 7).await;

    crate::transparency::sql(&app, "ALTER TABLE audit_outbox RENAME TO audit_outbox_gone").await;
    let refused = issuer.post("/api/v1/issued-documents", deposit).await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    let refused = asker.ask(&c.national_id, "verify", &[]).await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    // A revocation without its record does not happen either.
    let refused = c
        .post(&format!("/me/grants/{grant}/revoke"), json!({}))
        .await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    crate::transparency::sql(&app, "ALTER TABLE audit_outbox_gone RENAME TO audit_outbox").await;
    let still: serde_json::Value = asker
        .read(&format!("/api/v1/grants/{grant}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        still["status"], "active",
        "the unrecorded revocation did not happen"
    );
    // With the trail back, it does.
    let revoked = c
        .post(&format!("/me/grants/{grant}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(crate::helpers::recorded(&app, "grant.revoke").await, 1);

    let docs = app
        .state
        .store
        .citizen_documents(c.citizen_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        docs.len(),
        2,
        "only the recorded deposit stands, with the licence"
    );
    let requests: serde_json::Value = c.get("/me/requests").await.json().await.unwrap();
    assert_eq!(
        requests["requests"].as_array().unwrap().len(),
        1,
        "only the recorded request stands: {requests}"
    );
    // And every change that stands is in the trail.
    let deposits = crate::helpers::recorded(&app, "document.deposit").await
        + crate::helpers::recorded(&app, "request.create").await;
    assert_eq!(deposits, 2);
    app.stop().await;
}

/// Account-side changes (registration, sign-in, unlock, step-up, sessions ended, codes and
/// invites issued) commit with their records too: with the trail unwritable, none stands.
async fn an_account_change_whose_record_cannot_be_written_does_not_stand(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(745), "Account").await;
    // Signed in again: a locked session.
    c.login().await;
    let newcomer_id = national_id(746);
    let code = crate::citizen_kit::enrolment_code(&app, &newcomer_id).await;
    let mut newcomer = Citizen::unregistered(&app.base, &newcomer_id, "Newcomer", &code);
    let before = crate::helpers::events(&app).await.len();

    crate::transparency::sql(&app, "ALTER TABLE audit_outbox RENAME TO audit_outbox_gone").await;
    let refused = newcomer.finish_registration().await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    let refused = c.finish_login().await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    let refused = c.unlock(crate::citizen_kit::PASSPHRASE).await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    let refused = c.step_up().await;
    assert!(refused.status().is_server_error(), "{}", refused.status());
    assert!(
        custodia::citizens::enrol(
            &app.state,
            &national_id(747),
            custodia::citizens::Enroller::Operator
        )
        .await
        .is_err(),
        "an enrolment code without its record is not issued"
    );
    assert!(
        custodia::auditors::invite(&app.state, "审计员甲")
            .await
            .is_err()
    );
    crate::transparency::sql(&app, "ALTER TABLE audit_outbox_gone RENAME TO audit_outbox").await;

    // Nothing of it stands: the trail has no new event, the vault is still locked, and
    // the unused code still registers the newcomer.
    assert_eq!(crate::helpers::events(&app).await.len(), before);
    let me: serde_json::Value = c.me().await.json().await.unwrap();
    assert_eq!(me["unlocked"], false, "{me}");
    let mut newcomer = Citizen::unregistered(&app.base, &newcomer_id, "Newcomer", &code);
    assert_eq!(newcomer.finish_registration().await.status(), 200);
    // With the trail back, each works and is recorded.
    c.login().await;
    assert_eq!(c.unlock(crate::citizen_kit::PASSPHRASE).await.status(), 200);
    assert_eq!(c.step_up().await.status(), 200);
    assert_eq!(crate::helpers::recorded(&app, "citizen.register").await, 2);
    assert_eq!(crate::helpers::recorded(&app, "login").await, 2);
    assert_eq!(crate::helpers::recorded(&app, "vault.unlock").await, 1);
    app.stop().await;
}

/// Approving is one transaction: two approvals of one request racing make one grant.
async fn two_approvals_racing_make_one_grant(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "市场监督管理局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(741), "Racing").await;
    c.licence("竞速科技有限公司", None).await;
    let asked: serde_json::Value = agency
        .ask(&c.national_id, "fields", &["company_name"])
        .await
        .json()
        .await
        .unwrap();
    let id = asked["id"].as_str().unwrap().to_owned();
    let path = format!("/me/requests/{id}/approve");
    let (a, b) = tokio::join!(c.post(&path, json!({})), c.post(&path, json!({})));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert!(
        statuses == [201, 409] || statuses == [200, 409],
        "{statuses:?}"
    );
    let grants: serde_json::Value = c.get("/me/grants").await.json().await.unwrap();
    assert_eq!(grants["grants"].as_array().unwrap().len(), 1, "{grants:#}");
    app.stop().await;
}

/// SPEC §4: agency POSTs accept `Idempotency-Key`: a retry gets the first answer, racing
/// retries make one request, and the key cannot be reused for another request.
async fn a_retried_request_with_the_same_idempotency_key_creates_one(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "市场监督管理局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(750), "Retry").await;
    let body = |purpose: &str| {
        json!({
            "national_id": c.national_id,
            "document_types": ["business_license"],
            "tier": "verify",
            "purpose_code": "business_registration",
            "purpose": purpose,
            "duration_days": 7,
            "retention_days": 30,
        })
    };
    let send = |key: &'static str, body: serde_json::Value| {
        agency
            .http
            .post(app.url("/api/v1/access-requests"))
            .bearer_auth(&agency.key)
            .header("idempotency-key", key)
            .header("x-officer-id", "officer-7")
            .header("x-case-id", "CASE-9")
            .json(&body)
            .send()
    };
    let first = send("4f1c9d3e-retry-1", body("设立登记")).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = send("4f1c9d3e-retry-1", body("设立登记")).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap(),
        first,
        "the first answer"
    );
    // Racing retries of a new key.
    let (a, b) = tokio::join!(
        send("4f1c9d3e-retry-2", body("变更登记")),
        send("4f1c9d3e-retry-2", body("变更登记"))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
    assert_eq!(
        a.json::<serde_json::Value>().await.unwrap()["id"],
        b.json::<serde_json::Value>().await.unwrap()["id"]
    );
    // The key with another request: refused, nothing made.
    let reused = send("4f1c9d3e-retry-1", body("注销登记")).await.unwrap();
    crate::helpers::assert_problem(reused, 422).await;
    let bad = send("has spaces in it", body("注销登记")).await.unwrap();
    crate::helpers::assert_problem(bad, 400).await;
    let requests: serde_json::Value = c.get("/me/requests").await.json().await.unwrap();
    assert_eq!(
        requests["requests"].as_array().unwrap().len(),
        2,
        "{requests:#}"
    );
    app.stop().await;
}

/// Deposits take `Idempotency-Key` too (JSON and multipart, registered and unregistered
/// IDs alike: the same id comes back, one document is stored); enrolment codes, kept only
/// as fingerprints, are never replayed: a retry under the same key is told to ask again.
async fn a_retried_deposit_stores_one_and_a_retried_enrolment_code_is_never_replayed(
    backend: Backend,
) {
    use crate::agency_api::{clearance, sign_deposit};
    let (_env, app) = spawn_app(backend).await;
    let (issuer, key) = Agency::issuer(&app, "国家税务总局北京市税务局").await;
    let c = Citizen::register(&app, &national_id(760), "Deposited twice").await;
    let held = |app: &TestApp| {
        let id = c.citizen_id.parse().unwrap();
        let store = app.state.store.clone();
        async move { store.citizen_documents(id).await.unwrap().len() }
    };
    let json_deposit = |idem: &'static str, doc: serde_json::Value| {
        issuer
            .http
            .post(app.url("/api/v1/issued-documents"))
            .bearer_auth(&issuer.key)
            .header("idempotency-key", idem)
            .json(&doc)
            .send()
    };
    let answer = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 202);
        r.json::<serde_json::Value>().await.unwrap()["id"].clone()
    };
    let doc = sign_deposit(&key, clearance(&c.national_id, None));
    let first = answer(json_deposit("dep-1", doc.clone()).await.unwrap()).await;
    let again = answer(json_deposit("dep-1", doc.clone()).await.unwrap()).await;
    assert_eq!(first, again, "the first answer");
    assert_eq!(held(&app).await, 1);
    // The key with another deposit: refused.
    let mut other = clearance(&c.national_id, None);
    other["fields"]["certificate_number"] = json!("京税证〔2026〕0099");
    let reused = json_deposit("dep-1", sign_deposit(&key, other))
        .await
        .unwrap();
    crate::helpers::assert_problem(reused, 422).await;
    assert_eq!(held(&app).await, 1);

    // Multipart with a file, retried: one more document.
    let pdf = pdf_bytes(6_000, "retried");
    let sha = custodia_crypto::digest::hex(&custodia_crypto::digest::sha256(&pdf));
    let with_file = sign_deposit(&key, clearance(&c.national_id, Some(&sha)));
    let multipart = || {
        let form = reqwest::multipart::Form::new()
            .text("document", with_file.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(pdf.clone()).file_name("完税证明.pdf"),
            );
        issuer
            .http
            .post(app.url("/api/v1/issued-documents"))
            .bearer_auth(&issuer.key)
            .header("idempotency-key", "dep-2")
            .multipart(form)
            .send()
    };
    let (a, b) = tokio::join!(multipart(), multipart());
    let (a, b) = (answer(a.unwrap()).await, answer(b.unwrap()).await);
    assert_eq!(a, b, "racing retries get one answer");
    assert_eq!(held(&app).await, 2);
    let c2 = answer(multipart().await.unwrap()).await;
    assert_eq!(a, c2, "a later retry too");
    assert_eq!(held(&app).await, 2);

    // An unregistered ID answers alike: the same id again.
    let nobody = sign_deposit(&key, clearance(&national_id(761), None));
    let x = answer(json_deposit("dep-3", nobody.clone()).await.unwrap()).await;
    let y = answer(json_deposit("dep-3", nobody).await.unwrap()).await;
    assert_eq!(x, y);

    // Enrolment codes.
    let hall = custodia::agencies::create(
        &app.state,
        &custodia::agencies::NewAgency {
            name: "政务服务中心",
            level: Level::Municipal,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: true,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await
    .unwrap();
    let enrol = |idem: &'static str| {
        reqwest::Client::new()
            .post(app.url("/api/v1/enrolment-codes"))
            .bearer_auth(hall.api_key.as_str())
            .header("idempotency-key", idem)
            .json(&json!({ "national_id": national_id(762) }))
            .send()
    };
    let codes_before = crate::helpers::recorded(&app, "citizen.enrol").await;
    assert_eq!(enrol("code-1").await.unwrap().status(), 201);
    let retried = crate::helpers::assert_problem(enrol("code-1").await.unwrap(), 409).await;
    assert!(retried["detail"].as_str().unwrap().contains("new key"));
    assert_eq!(enrol("code-2").await.unwrap().status(), 201);
    assert_eq!(
        crate::helpers::recorded(&app, "citizen.enrol").await,
        codes_before + 2
    );
}

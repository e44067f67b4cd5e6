//! The agency API end to end: requests, approval in the citizen's inbox, reads at each
//! tier, and every refusal (SPEC §4, G1, G2).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia::agencies::Level;
use custodia_crypto::digest;
use custodia_crypto::sign::SigningKey;
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, licence_fields, pdf_bytes};
use crate::helpers::{Backend, assert_problem, both_backends, national_id, spawn_app};

both_backends!(
    every_refusal_is_clear_and_recorded,
    reads_are_counted_and_a_grant_is_exhausted,
    concurrent_reads_never_pass_the_limit,
    keys_rotate_and_agencies_are_disabled,
    what_a_node_kept_never_outlives_a_change_made_elsewhere,
    a_read_whose_record_cannot_be_written_sends_nothing,
    the_typed_client_walks_the_guide,
);

// What reads and stores blobs runs on every storage layout, S3 included.
crate::helpers::every_store!(
    an_agency_requests_is_approved_reads_per_tier_and_is_refused_after_revocation,
    issuers_deposit_signed_documents_sealed_to_the_citizen,
    no_read_succeeds_once_the_revocation_commits,
);

async fn licence(c: &Citizen, company: &str, file: Option<Vec<u8>>) -> String {
    let r = c
        .upload(
            None,
            "business_license",
            licence_fields(company),
            file.map(|f| ("执照.pdf", f)),
        )
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn json_of(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    r.json().await.unwrap()
}

/// A grant given directly by the citizen (`POST /me/grants`).
async fn grant(c: &Citizen, agency: &Agency, body: Value) -> String {
    let mut body = body;
    body["agency_id"] = json!(agency.id);
    let g = json_of(c.post("/me/grants", body).await, 201).await;
    g["id"].as_str().unwrap().to_owned()
}

async fn an_agency_requests_is_approved_reads_per_tier_and_is_refused_after_revocation(
    backend: Backend,
) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "海淀区市场监管局", Level::Municipal).await;
    let c = Citizen::register(&app, &national_id(201), "Reader").await;
    let doc = licence(&c, "分级读取有限公司", Some(pdf_bytes(70_000, "tiers"))).await;

    // The agency asks; the answer is the same for a registered and an unknown citizen.
    let asked = json_of(
        agency
            .ask(&c.national_id, "fields", &["company_name"])
            .await,
        201,
    )
    .await;
    let unknown = json_of(
        agency
            .ask(&national_id(202), "fields", &["company_name"])
            .await,
        201,
    )
    .await;
    assert_eq!(asked["status"], "pending");
    assert_eq!(unknown["status"], "pending");
    let request = asked["id"].as_str().unwrap();
    let status = json_of(
        agency
            .get(&format!("/api/v1/access-requests/{request}"))
            .await,
        200,
    )
    .await;
    assert_eq!(status["status"], "pending");
    assert!(status.get("grant_id").is_none());

    // The citizen approves, narrowed to a shorter time.
    let g = json_of(
        c.post(
            &format!("/me/requests/{request}/approve"),
            json!({ "duration_days": 7 }),
        )
        .await,
        201,
    )
    .await;
    let grant_id = g["id"].as_str().unwrap().to_owned();
    let status = json_of(
        agency
            .get(&format!("/api/v1/access-requests/{request}"))
            .await,
        200,
    )
    .await;
    assert_eq!(status["status"], "approved");
    assert_eq!(status["grant_id"], grant_id.as_str());

    // The agency sees its grant and what it covers.
    let list = json_of(agency.get("/api/v1/grants").await, 200).await;
    assert_eq!(list["grants"][0]["id"], grant_id.as_str());
    assert_eq!(list["grants"][0]["tier"], "fields");
    let docs = json_of(
        agency
            .read(&format!("/api/v1/grants/{grant_id}/documents"))
            .await,
        200,
    )
    .await;
    assert_eq!(docs["documents"][0]["id"], doc.as_str());

    // fields: exactly the granted field.
    let read = json_of(
        agency
            .read(&format!("/api/v1/grants/{grant_id}/documents/{doc}"))
            .await,
        200,
    )
    .await;
    assert_eq!(read["tier"], "fields");
    assert_eq!(
        read["fields"],
        json!({ "company_name": "分级读取有限公司" })
    );
    assert_eq!(read["issuer_signature"], "none");
    assert!(read.get("file").is_none());
    // The file needs the full tier.
    assert_problem(
        agency
            .read(&format!("/api/v1/grants/{grant_id}/documents/{doc}/file"))
            .await,
        403,
    )
    .await;

    // verify: attestation only.
    let v_grant = grant(
        &c,
        &agency,
        json!({ "document_ids": [doc], "tier": "verify", "purpose": "存在性核验" }),
    )
    .await;
    let v = json_of(
        agency
            .read(&format!("/api/v1/grants/{v_grant}/documents/{doc}"))
            .await,
        200,
    )
    .await;
    assert_eq!(v["type"], "business_license");
    assert!(v.get("fields").is_none() && v.get("file").is_none());
    assert_eq!(v["content_sha256"].as_str().unwrap().len(), 64);
    assert!(
        !v.to_string().contains("分级读取"),
        "verify reveals no values"
    );

    // full: every field and the file, byte for byte, with its digest headers.
    let f_grant = grant(
        &c,
        &agency,
        json!({ "document_types": ["business_license"], "tier": "full", "purpose": "纳税申报", "purpose_code": "tax_filing" }),
    )
    .await;
    let full = json_of(
        agency
            .read(&format!("/api/v1/grants/{f_grant}/documents/{doc}"))
            .await,
        200,
    )
    .await;
    assert_eq!(full["fields"]["business_scope"], "技术开发、技术咨询");
    assert_eq!(full["file"]["size"], 70_000);
    let file = agency
        .read(&format!("/api/v1/grants/{f_grant}/documents/{doc}/file"))
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "application/pdf");
    assert_eq!(file.headers()["content-length"], "70000");
    let expected = pdf_bytes(70_000, "tiers");
    let sha = digest::hex(&digest::sha256(&expected));
    assert_eq!(
        file.headers()["etag"].to_str().unwrap(),
        format!("\"{sha}\"")
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(digest::sha256(&expected));
    assert_eq!(
        file.headers()["repr-digest"].to_str().unwrap(),
        format!("sha-256=:{b64}:")
    );
    assert_eq!(file.bytes().await.unwrap().as_ref(), expected.as_slice());

    // The citizen sees the reads counted, then revokes; the agency is refused at once.
    let mine = json_of(c.get("/me/grants").await, 200).await;
    let reads = mine["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == grant_id.as_str())
        .unwrap()["reads"]
        .clone();
    assert_eq!(reads, 1);
    json_of(
        c.post(&format!("/me/grants/{grant_id}/revoke"), json!({}))
            .await,
        200,
    )
    .await;
    let refused = assert_problem(
        agency
            .read(&format!("/api/v1/grants/{grant_id}/documents/{doc}"))
            .await,
        403,
    )
    .await;
    assert!(refused["detail"].as_str().unwrap().contains("revoked"));
    assert_problem(
        agency
            .read(&format!("/api/v1/grants/{grant_id}/documents"))
            .await,
        403,
    )
    .await;

    // Time runs out for the verify grant: refused at the boundary, sweeper or not.
    app.clock.advance(time::Duration::days(30));
    assert_problem(
        agency
            .read(&format!("/api/v1/grants/{v_grant}/documents/{doc}"))
            .await,
        403,
    )
    .await;

    // Every read and refusal is on one chain that verifies.
    let summary = app.verify_trail().await.unwrap();
    assert!(summary.events >= 8, "{summary:?}");
}

async fn every_refusal_is_clear_and_recorded(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "朝阳区税务局", Level::Municipal).await;
    let other = Agency::create(&app, "西城区人社局", Level::Municipal).await;
    let c = Citizen::register(&app, &national_id(211), "Refused").await;
    let d = Citizen::register(&app, &national_id(212), "Bystander").await;
    let doc = licence(&c, "拒绝测试公司", None).await;
    let someone_elses = licence(&d, "旁人公司", None).await;
    let g = grant(
        &c,
        &agency,
        json!({ "document_ids": [doc], "tier": "fields", "fields": ["company_name"], "purpose": "核验" }),
    )
    .await;
    let path = format!("/api/v1/grants/{g}/documents/{doc}");

    // No key, a forged key: 401 with a Bearer challenge.
    let none = reqwest::get(format!("{}{path}", app.base)).await.unwrap();
    assert_eq!(
        none.headers()["www-authenticate"],
        "Bearer realm=\"custodia\""
    );
    assert_problem(none, 401).await;
    let forged = Agency {
        key: format!("cus_{}", URL_SAFE_NO_PAD.encode([7u8; 32])),
        ..Agency::create(&app, "冒名", Level::County).await
    };
    assert_problem(forged.read(&path).await, 401).await;

    // Officer and case are required on reads.
    let p = assert_problem(agency.get(&path).await, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("x-officer-id"));
    let no_case = agency
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(&agency.key)
        .header("x-officer-id", "o-1")
        .send()
        .await
        .unwrap();
    assert!(
        assert_problem(no_case, 400).await["detail"]
            .as_str()
            .unwrap()
            .contains("x-case-id")
    );

    // A header that names one thing sent twice is refused, not guessed at: two keys (even
    // the same key twice) get the challenge, two officers or two cases a 400 naming the
    // header; none of them is a read, recorded or counted.
    let reads_before = crate::helpers::recorded(&app, "document.read").await;
    let twice = |extra: (&'static str, String)| {
        agency
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&agency.key)
            .header("x-officer-id", "o-1")
            .header("x-case-id", "c-1")
            .header(extra.0, extra.1)
            .send()
    };
    for key in [agency.key.clone(), other.key.clone()] {
        let r = twice(("authorization", format!("Bearer {key}")))
            .await
            .unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"custodia\"");
        let p = assert_problem(r, 401).await;
        assert!(
            p["detail"].as_str().unwrap().contains("Authorization"),
            "{p}"
        );
    }
    for name in ["x-officer-id", "x-case-id"] {
        let r = twice((name, "someone-else".into())).await.unwrap();
        let p = assert_problem(r, 400).await;
        assert!(p["detail"].as_str().unwrap().contains(name), "{p}");
    }
    assert_eq!(
        crate::helpers::recorded(&app, "document.read").await,
        reads_before
    );

    // Another agency's grant, another citizen's document, a document that does not exist:
    // all the same 404, so nothing is learned about what exists.
    let a = assert_problem(other.read(&path).await, 404).await;
    let b = assert_problem(
        agency
            .read(&format!("/api/v1/grants/{g}/documents/{someone_elses}"))
            .await,
        404,
    )
    .await;
    let c404 = assert_problem(
        agency
            .read(&format!(
                "/api/v1/grants/{g}/documents/{}",
                uuid::Uuid::new_v4()
            ))
            .await,
        404,
    )
    .await;
    assert_eq!(a["detail"], b["detail"]);
    assert_eq!(b["detail"], c404["detail"]);
    assert_problem(other.get(&format!("/api/v1/grants/{g}")).await, 404).await;

    // A field the grant does not reveal.
    assert_problem(
        agency.read(&format!("{path}?fields=business_scope")).await,
        403,
    )
    .await;
    // Narrowing within the grant is fine.
    let ok = json_of(
        agency.read(&format!("{path}?fields=company_name")).await,
        200,
    )
    .await;
    assert_eq!(ok["fields"]["company_name"], "拒绝测试公司");

    // Over-asking purposes and bad requests are refused before the citizen is asked.
    let over = agency.ask(&c.national_id, "full", &[]).await;
    assert!(
        assert_problem(over, 403).await["detail"]
            .as_str()
            .unwrap()
            .contains("business_registration")
    );
    assert_problem(agency.ask("123", "verify", &[]).await, 422).await;
    assert_problem(
        agency
            .get(&format!("/api/v1/access-requests/{}", uuid::Uuid::new_v4()))
            .await,
        404,
    )
    .await;
    assert_problem(agency.get("/api/v1/grants?cursor=%%%").await, 422).await;

    // G8 on the agency API: malformed, unknown-field, oversized and wrong-typed bodies are
    // problem+json and change nothing.
    let requests_before = app
        .state
        .store
        .citizen_requests(c.citizen_id.parse().unwrap())
        .await
        .unwrap()
        .len();
    // A connection of its own per request: the server may close one after refusing an
    // oversized body unread, and a pooled client would reuse it.
    let raw = |path: &str, content_type: &str, body: Vec<u8>| {
        agency
            .http
            .post(format!("{}{path}", app.base))
            .bearer_auth(&agency.key)
            .header("content-type", content_type.to_owned())
            .header("connection", "close")
            .body(body)
            .send()
    };
    assert_problem(
        raw(
            "/api/v1/access-requests",
            "application/json",
            b"{not json".to_vec(),
        )
        .await
        .unwrap(),
        400,
    )
    .await;
    let mut extra = json!({ "national_id": c.national_id, "document_types": ["business_license"], "tier": "verify",
        "purpose_code": "business_registration", "purpose": "x", "duration_days": 7, "retention_days": 30 });
    extra["surprise"] = json!(true);
    assert_problem(
        raw(
            "/api/v1/access-requests",
            "application/json",
            extra.to_string().into_bytes(),
        )
        .await
        .unwrap(),
        422,
    )
    .await;
    for path in ["/api/v1/access-requests", "/api/v1/issued-documents"] {
        assert_problem(
            raw(path, "application/json", vec![b' '; 200_000])
                .await
                .unwrap(),
            413,
        )
        .await;
    }
    assert_problem(
        raw("/api/v1/issued-documents", "text/plain", b"hello".to_vec())
            .await
            .unwrap(),
        415,
    )
    .await;
    assert_eq!(
        app.state
            .store
            .citizen_requests(c.citizen_id.parse().unwrap())
            .await
            .unwrap()
            .len(),
        requests_before,
        "nothing was stored"
    );

    // The refusals are in the trail, with the agency, officer and reason; the citizen's
    // are under their pseudonym only.
    let pseudonym = app
        .state
        .store
        .citizen(c.citizen_id.parse().unwrap())
        .await
        .unwrap()
        .pseudonym;
    let events = app
        .state
        .store
        .audit_search(
            &custodia::store::audit::AuditFilter {
                outcome: Some("refused".into()),
                ..Default::default()
            },
            100,
        )
        .await
        .unwrap();
    let theirs: Vec<_> = events
        .iter()
        .filter(|e| e.citizen_pseudonym.as_deref() == Some(&pseudonym))
        .collect();
    assert!(theirs.len() >= 3, "{events:#?}");
    assert!(
        theirs
            .iter()
            .all(|e| e.officer_id.is_some() && e.detail.is_some())
    );
    let dump = format!("{events:?}");
    assert!(!dump.contains(&c.national_id) && !dump.contains("拒绝测试公司"));
}

async fn reads_are_counted_and_a_grant_is_exhausted(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "限次读取局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(221), "Counted").await;
    let doc = licence(&c, "限次公司", None).await;
    let g = grant(
        &c,
        &agency,
        json!({ "document_ids": [doc], "tier": "verify", "purpose": "核验", "max_reads": 2 }),
    )
    .await;
    let path = format!("/api/v1/grants/{g}/documents/{doc}");
    json_of(agency.read(&path).await, 200).await;
    json_of(agency.read(&path).await, 200).await;
    let third = assert_problem(agency.read(&path).await, 403).await;
    assert!(third["detail"].as_str().unwrap().contains("exhausted"));
    let seen = json_of(agency.get(&format!("/api/v1/grants/{g}")).await, 200).await;
    assert_eq!(seen["status"], "exhausted");
    assert_eq!(seen["reads"], 2);
    // Exhaustion destroyed the grant's keys in the same transaction.
    assert!(
        app.state
            .store
            .grant_wraps(g.parse().unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

/// Many reads of one grant at once are counted together in the audit batch (one statement
/// per grant when they fit under `max_reads`, one by one when they do not): exactly
/// `max_reads` succeed, each with its record, the rest are refused as exhausted, and the
/// grant ends once, with its keys.
async fn concurrent_reads_never_pass_the_limit(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = std::sync::Arc::new(Agency::create(&app, "并发限次局", Level::Provincial).await);
    let c = Citizen::register(&app, &national_id(222), "Concurrent").await;
    let doc = licence(&c, "并发公司", None).await;
    let other = licence(&c, "并发二公司", None).await;
    // The last two rounds read two documents under one grant at once, so a batch holds
    // claims on one grant under two covers (which go step by step).
    for (round, max, readers, docs) in [
        (0, 12usize, 40usize, 1usize),
        (1, 40, 40, 1),
        (2, 1000, 48, 1),
        (3, 30, 40, 2),
        (4, 1000, 40, 2),
    ] {
        let documents = &[doc.clone(), other.clone()][..docs];
        let g = grant(
            &c,
            &agency,
            json!({ "document_ids": documents, "tier": "verify", "purpose": format!("并发 {round}"), "max_reads": max }),
        )
        .await;
        let before = crate::helpers::recorded(&app, "document.read").await;
        let tasks: Vec<_> = (0..readers)
            .map(|i| {
                let path = format!("/api/v1/grants/{g}/documents/{}", documents[i % docs]);
                let agency = agency.clone();
                tokio::spawn(async move { agency.read(&path).await.status().as_u16() })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                200 => ok += 1,
                403 => {}
                other => panic!("a read answered {other}"),
            }
        }
        let expected = max.min(readers);
        assert_eq!(ok, expected, "round {round}: reads answered 200");
        let seen = json_of(agency.get(&format!("/api/v1/grants/{g}")).await, 200).await;
        assert_eq!(seen["reads"], expected, "round {round}: the counter");
        let status = if max <= readers {
            "exhausted"
        } else {
            "active"
        };
        assert_eq!(seen["status"], status, "round {round}");
        let events = crate::helpers::events(&app).await;
        let granted_reads = events
            .iter()
            .filter(|e| e.action == "document.read" && e.outcome == "ok")
            .filter(|e| e.grant_id.map(|id| id.to_string()) == Some(g.clone()))
            .count();
        assert_eq!(
            granted_reads, expected,
            "round {round}: one record per read"
        );
        let exhausted = events
            .iter()
            .filter(|e| e.action == "grant.exhausted")
            .filter(|e| e.grant_id.map(|id| id.to_string()) == Some(g.clone()))
            .count();
        assert_eq!(exhausted, usize::from(max <= readers), "round {round}");
        assert!(crate::helpers::recorded(&app, "document.read").await >= before + readers);
    }
}

pub(crate) fn sign_deposit(key: &SigningKey, mut doc: Value) -> Value {
    let canonical = digest::canonical_json(&doc).unwrap();
    let sig = key.sign_raw(canonical.as_bytes());
    doc["signature"] = json!(URL_SAFE_NO_PAD.encode(sig));
    doc
}

pub(crate) fn clearance(national_id: &str, file_sha256: Option<&str>) -> Value {
    let mut doc = json!({
        "national_id": national_id,
        "type": "tax_clearance",
        "fields": {
            "taxpayer_name": "存放测试公司",
            "taxpayer_id": "91110105MA01ABCD2X",
            "period_from": "2025-01-01",
            "period_to": "2025-12-31",
            "tax_bureau": "国家税务总局北京市税务局",
            "certificate_number": "京税证〔2026〕0042",
        },
        "issued_at": "2026-01-15T09:00:00Z",
        "expires_at": "2027-01-15T09:00:00Z",
    });
    if let Some(sha) = file_sha256 {
        doc["file_sha256"] = json!(sha);
    }
    doc
}

async fn issuers_deposit_signed_documents_sealed_to_the_citizen(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (issuer, issuer_key) = Agency::issuer(&app, "国家税务总局北京市税务局").await;
    let consumer = Agency::create(&app, "北京市市场监管局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(231), "Depositee").await;

    // Signed JSON deposit, while the citizen is away (signed out: no session at all).
    let deposit = sign_deposit(&issuer_key, clearance(&c.national_id, None));
    let accepted = json_of(
        issuer
            .post("/api/v1/issued-documents", deposit.clone())
            .await,
        202,
    )
    .await;
    assert_eq!(accepted["status"], "accepted");
    // It waits sealed: no vault wrap until the citizen unlocks.
    let docs = app
        .state
        .store
        .citizen_documents(c.citizen_id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(docs.len(), 1);
    let versions = app.state.store.document_versions(docs[0].id).await.unwrap();
    assert!(versions[0].data_key_wrap.is_none() && versions[0].sealed_deposit.is_some());

    // An unknown national ID gets the same answer.
    let unknown = json_of(
        issuer
            .post(
                "/api/v1/issued-documents",
                sign_deposit(&issuer_key, clearance(&national_id(232), None)),
            )
            .await,
        202,
    )
    .await;
    assert_eq!(unknown["status"], "accepted");

    // Mis-signed, forged by another key, or from a non-issuer: refused.
    let mut tampered = deposit.clone();
    tampered["fields"]["taxpayer_name"] = json!("篡改公司");
    let p = assert_problem(issuer.post("/api/v1/issued-documents", tampered).await, 422).await;
    assert!(p["detail"].as_str().unwrap().contains("signature"));
    let forged = sign_deposit(&SigningKey::generate(), clearance(&c.national_id, None));
    assert_problem(issuer.post("/api/v1/issued-documents", forged).await, 422).await;
    assert_problem(
        consumer
            .post("/api/v1/issued-documents", deposit.clone())
            .await,
        403,
    )
    .await;

    // With a file: the digest must match the attached bytes.
    let pdf = pdf_bytes(5000, "clearance");
    let sha = digest::hex(&digest::sha256(&pdf));
    let with_file = sign_deposit(&issuer_key, clearance(&c.national_id, Some(&sha)));
    let send = |doc: Value, bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("document", doc.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name("完税证明.pdf"),
            );
        issuer
            .http
            .post(format!("{}/api/v1/issued-documents", app.base))
            .bearer_auth(&issuer.key)
            .multipart(form)
            .send()
    };
    json_of(send(with_file.clone(), pdf.clone()).await.unwrap(), 202).await;
    let wrong = send(with_file, pdf_bytes(5000, "other")).await.unwrap();
    assert!(
        assert_problem(wrong, 422).await["detail"]
            .as_str()
            .unwrap()
            .contains("file_sha256")
    );

    // The citizen's next look picks them up: issuer named, contents open.
    let list = json_of(c.get("/me/documents").await, 200).await;
    let items = list["documents"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|d| d["issuer_agency_id"] == issuer.id.as_str())
    );
    let versions = app.state.store.document_versions(docs[0].id).await.unwrap();
    assert!(versions[0].data_key_wrap.is_some() && versions[0].sealed_deposit.is_none());
    let opened = json_of(c.get(&format!("/me/documents/{}", docs[0].id)).await, 200).await;
    assert_eq!(opened["fields"]["taxpayer_name"], "存放测试公司");
    assert_eq!(opened["issuer"]["name"], "国家税务总局北京市税务局");
    assert_eq!(opened["issuer"]["signature_valid"], true);
    assert_eq!(opened["issuer"]["trust"], "valid");
    // Received, not yet accepted: a grant of the type does not reach them.
    assert!(items.iter().all(|d| d["status"] == "received"));
    let early = grant(
        &c,
        &consumer,
        json!({ "document_types": ["tax_clearance"], "tier": "verify", "purpose": "登记核验", "legal_basis": "《市场主体登记管理条例》第十六条" }),
    )
    .await;
    let none = json_of(
        consumer
            .read(&format!("/api/v1/grants/{early}/documents"))
            .await,
        200,
    )
    .await;
    assert_eq!(none["documents"].as_array().unwrap().len(), 0);
    let named = c
        .post(
            "/me/grants",
            json!({ "agency_id": consumer.id, "document_ids": [docs[0].id], "tier": "verify", "purpose": "登记核验", "legal_basis": "《市场主体登记管理条例》第十六条", "duration_days": 7 }),
        )
        .await;
    assert!(
        assert_problem(named, 422).await["detail"]
            .as_str()
            .unwrap()
            .contains("accept")
    );
    // Accepting joins the live grant of its type at once; accepting again changes nothing.
    for d in items {
        let id = d["id"].as_str().unwrap();
        let taken = json_of(
            c.post(&format!("/me/documents/{id}/accept"), json!({}))
                .await,
            200,
        )
        .await;
        assert_eq!(taken["status"], "accepted");
    }
    let again = json_of(
        c.post(&format!("/me/documents/{}/accept", docs[0].id), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(again["status"], "accepted");
    let joined = json_of(
        consumer
            .read(&format!("/api/v1/grants/{early}/documents"))
            .await,
        200,
    )
    .await;
    assert_eq!(joined["documents"].as_array().unwrap().len(), 2);
    assert_eq!(crate::helpers::recorded(&app, "document.accept").await, 2);
    let page = c
        .get(&format!("/documents/{}", docs[0].id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("国家税务总局北京市税务局"),
        "the page names the issuer"
    );
    assert!(
        page.contains("class=\"issuer verified\""),
        "and shows it verified"
    );

    // A verify read reports the issuer and that its signature holds.
    let g = grant(
        &c,
        &consumer,
        json!({ "document_types": ["tax_clearance"], "tier": "verify", "purpose": "登记核验", "legal_basis": "《市场主体登记管理条例》第十六条" }),
    )
    .await;
    let docs = json_of(
        consumer
            .read(&format!("/api/v1/grants/{g}/documents"))
            .await,
        200,
    )
    .await;
    assert_eq!(docs["documents"].as_array().unwrap().len(), 2);
    let id = docs["documents"][0]["id"].as_str().unwrap();
    let v = json_of(
        consumer
            .read(&format!("/api/v1/grants/{g}/documents/{id}"))
            .await,
        200,
    )
    .await;
    assert_eq!(v["issuer_signature"], "valid");
    assert_eq!(v["issuer"]["name"], "国家税务总局北京市税务局");
    assert_eq!(v["issued_at"], "2026-01-15T09:00:00Z");
    assert!(v.get("fields").is_none());

    // A deposit that arrives while a type-scoped grant lives joins it once accepted.
    json_of(
        issuer
            .post(
                "/api/v1/issued-documents",
                sign_deposit(&issuer_key, clearance(&c.national_id, None)),
            )
            .await,
        202,
    )
    .await;
    let list = json_of(c.get("/me/documents").await, 200).await;
    let fresh: Vec<&str> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "received")
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(fresh.len(), 1);
    let listed = |g: String| {
        let consumer = &consumer;
        async move {
            json_of(
                consumer
                    .read(&format!("/api/v1/grants/{g}/documents"))
                    .await,
                200,
            )
            .await["documents"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(listed(g.clone()).await, 2, "received, not yet in the grant");
    json_of(
        c.post(&format!("/me/documents/{}/accept", fresh[0]), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(listed(g).await, 3);
}

async fn keys_rotate_and_agencies_are_disabled(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let mut agency = Agency::create(&app, "轮换局", Level::County).await;
    assert_eq!(agency.get("/api/v1/grants").await.status(), 200);
    let id: custodia::ids::AgencyId = agency.id.parse().unwrap();
    // The reads admit the key in the statement that loads what they read: every key
    // change must hold there exactly as on the other routes.
    let c = Citizen::register(&app, &national_id(226), "Rotated").await;
    let doc = licence(&c, "轮换公司", Some(pdf_bytes(5_000, "rotate"))).await;
    let g = full_grant_on(&c, &agency, &doc).await;
    let reads = [
        format!("/api/v1/grants/{g}/documents/{doc}"),
        format!("/api/v1/grants/{g}/documents/{doc}/file"),
    ];
    let all_answer = |agency: &Agency, status: u16| {
        let (agency, reads) = (agency.clone(), reads.clone());
        async move {
            assert_eq!(agency.get("/api/v1/grants").await.status(), status);
            for path in &reads {
                let r = agency.read(path).await;
                assert_eq!(r.status(), status, "{path}");
                if status == 401 {
                    assert!(r.headers().contains_key("www-authenticate"), "{path}");
                }
            }
        }
    };
    all_answer(&agency, 200).await;

    // Rotation with no overlap: the old key stops at once.
    let old = agency.clone();
    let new_key = custodia::agencies::rotate_key(&app.state, id, std::time::Duration::ZERO)
        .await
        .unwrap();
    // The node still holds what it loaded for the old key a moment ago: the read's claim
    // finds the key ended, nothing is recorded for that attempt, and the fresh look
    // refuses it exactly as before (an unknown key leaves no record).
    let head = app.state.store.audit_head().await.unwrap().0;
    all_answer(&old, 401).await;
    assert_eq!(app.state.store.audit_head().await.unwrap().0, head);
    agency.key = new_key.to_string();
    all_answer(&agency, 200).await;

    // With an overlap both work until it ends.
    let old = agency.clone();
    let newer = custodia::agencies::rotate_key(&app.state, id, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    all_answer(&old, 200).await;
    app.clock.advance(time::Duration::seconds(61));
    all_answer(&old, 401).await;
    agency.key = newer.to_string();
    all_answer(&agency, 200).await;

    // Disabled: refused at once, on every route.
    custodia::agencies::disable(&app.state, id).await.unwrap();
    all_answer(&agency, 401).await;
}

/// A node keeps what a read loaded for a moment; a change another node commits meanwhile
/// (here a deletion, written to the database as another node would, without telling this
/// node) still stops the next read here: its claim in the audit batch finds the document
/// gone, nothing is recorded for that attempt, and the fresh look refuses and records it.
async fn what_a_node_kept_never_outlives_a_change_made_elsewhere(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "记忆局", Level::County).await;
    let c = Citizen::register(&app, &national_id(227), "Kept").await;
    let doc = licence(&c, "记忆公司", Some(pdf_bytes(5_000, "kept"))).await;
    let g = full_grant_on(&c, &agency, &doc).await;
    let file = format!("/api/v1/grants/{g}/documents/{doc}/file");
    assert_eq!(agency.read(&file).await.status(), 200);

    execute(&app, "UPDATE documents SET deleted_at = 1")
        .await
        .unwrap();
    let head = app.state.store.audit_head().await.unwrap().0;
    // As curl or a browser resumes a download.
    let resumed = agency
        .reading(&file)
        .header("range", "bytes=0-")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .send()
        .await
        .unwrap();
    assert_problem(resumed, 404).await;
    assert_eq!(
        app.state.store.audit_head().await.unwrap().0,
        head + 1,
        "one record: the refusal, none for the attempt from what was kept"
    );
    let fields = agency
        .read(&format!("/api/v1/grants/{g}/documents/{doc}"))
        .await;
    assert_problem(fields, 404).await;
}

async fn a_read_whose_record_cannot_be_written_sends_nothing(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "故障注入局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(241), "Faulted").await;
    let doc = licence(&c, "故障注入公司", Some(pdf_bytes(20_000, "fault"))).await;
    let g = full_grant_on(&c, &agency, &doc).await;

    // Make every audit insert fail, in the database itself.
    let fail = match backend {
        Backend::Sqlite => vec![
            "CREATE TRIGGER audit_fault BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION audit_fault() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_fault BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_fault()",
        ],
    };
    for sql in &fail {
        execute(&app, sql).await.unwrap();
    }
    for path in [
        format!("/api/v1/grants/{g}/documents/{doc}"),
        format!("/api/v1/grants/{g}/documents/{doc}/file"),
    ] {
        let r = agency.read(&path).await;
        let body = assert_problem(r, 503).await;
        assert!(!body.to_string().contains("故障注入公司"));
    }
    // A resumed, compressed download as curl or a browser sends it: refused alike.
    let ranged = agency
        .reading(&format!("/api/v1/grants/{g}/documents/{doc}/file"))
        .header("range", "bytes=100-")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .send()
        .await
        .unwrap();
    assert_problem(ranged, 503).await;
    let seen = json_of(agency.get(&format!("/api/v1/grants/{g}")).await, 200).await;
    assert_eq!(seen["reads"], 0, "no read counted without its record");

    // Once the trail accepts records again, reads work and are counted.
    let drop = match backend {
        Backend::Sqlite => "DROP TRIGGER audit_fault",
        Backend::Postgres => "DROP TRIGGER audit_fault ON audit_events",
    };
    execute(&app, drop).await.unwrap();
    let file = agency
        .read(&format!("/api/v1/grants/{g}/documents/{doc}/file"))
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.bytes().await.unwrap().len(), 20_000);
    let seen = json_of(agency.get(&format!("/api/v1/grants/{g}")).await, 200).await;
    assert_eq!(seen["reads"], 1);
    app.verify_trail().await.unwrap();
}

async fn execute(app: &crate::helpers::TestApp, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    let mut tx = app.state.store.begin().await.unwrap();
    let done = custodia::on_engine!(&mut tx, c => {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut **c).await.map(|_| ()).map_err(|e| e.to_string())
    });
    if done.is_ok() {
        tx.commit().await.unwrap();
    }
    done
}

async fn no_read_succeeds_once_the_revocation_commits(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = std::sync::Arc::new(Agency::create(&app, "竞态局", Level::Provincial).await);
    let c = Citizen::register(&app, &national_id(251), "Raced").await;
    let doc = licence(&c, "竞态公司", None).await;
    for round in 0..5 {
        let g = grant(
            &c,
            &agency,
            json!({ "document_ids": [doc], "tier": "verify", "purpose": format!("竞态 {round}") }),
        )
        .await;
        let path = format!("/api/v1/grants/{g}/documents/{doc}");
        let revoked = std::sync::Arc::new(tokio::sync::Notify::new());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..4 {
            let (agency, path, done) = (agency.clone(), path.clone(), done.clone());
            readers.push(tokio::spawn(async move {
                let mut after_revoke_ok = 0;
                let mut before = 0;
                while before < 200 {
                    let started_after = done.load(std::sync::atomic::Ordering::SeqCst);
                    let status = agency.read(&path).await.status().as_u16();
                    if started_after {
                        if status == 200 {
                            after_revoke_ok += 1;
                        }
                        return after_revoke_ok;
                    }
                    before += 1;
                    tokio::task::yield_now().await;
                }
                after_revoke_ok
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let r = c.post(&format!("/me/grants/{g}/revoke"), json!({})).await;
        assert_eq!(r.status(), 200);
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        revoked.notify_waiters();
        for reader in readers {
            assert_eq!(
                reader.await.unwrap(),
                0,
                "a read started after the revoke succeeded"
            );
        }
        assert_problem(agency.read(&path).await, 403).await;
    }
}

/// The flow of docs/AGENCY_GUIDE.md, through the typed client.
async fn the_typed_client_walks_the_guide(backend: Backend) {
    use custodia::client::{AccessRequest, AgencyClient, ClientError, sign_deposit};
    let (_env, app) = spawn_app(backend).await;
    let issuer_key = SigningKey::generate();
    let public = URL_SAFE_NO_PAD.encode(issuer_key.verifying_key().to_bytes());
    let created = Agency::create_with(&app, "指南局", Level::Provincial, Some(&public)).await;
    let agency = AgencyClient::new(&app.base, &created.key)
        .unwrap()
        .acting_as("officer-7", "CASE-2026-001");
    let c = Citizen::register(&app, &national_id(261), "Guided").await;
    let doc: uuid::Uuid = licence(&c, "指南公司", Some(pdf_bytes(9000, "guide")))
        .await
        .parse()
        .unwrap();

    let asked = agency
        .request_access(&AccessRequest {
            national_id: c.national_id.clone(),
            document_types: vec!["business_license".into()],
            tier: "fields".into(),
            fields: vec!["company_name".into(), "business_scope".into()],
            purpose_code: "business_registration".into(),
            purpose: "设立登记材料核验".into(),
            legal_basis: None,
            duration_days: 30,
            retention_days: 90,
        })
        .await
        .unwrap();
    assert_eq!(
        agency.request_status(asked.id).await.unwrap().status,
        "pending"
    );
    json_of(
        c.post(
            &format!("/me/requests/{}/approve", asked.id),
            json!({ "fields": ["company_name"], "duration_days": 7 }),
        )
        .await,
        201,
    )
    .await;
    let grant = agency
        .request_status(asked.id)
        .await
        .unwrap()
        .grant_id
        .unwrap();
    assert_eq!(agency.grants().await.unwrap()[0].id, grant);
    let docs = agency.documents(grant).await.unwrap();
    assert_eq!(docs[0].id, doc);
    let read = agency.read(grant, doc, None).await.unwrap();
    assert_eq!(read["fields"], json!({ "company_name": "指南公司" }));
    match agency.read_file(grant, doc).await {
        Err(ClientError::Problem { status: 403, .. }) => {}
        other => panic!("file at fields tier: {other:?}"),
    }

    json_of(
        c.post(&format!("/me/grants/{grant}/revoke"), json!({}))
            .await,
        200,
    )
    .await;
    match agency.read(grant, doc, None).await {
        Err(ClientError::Problem {
            status: 403,
            detail,
            ..
        }) => assert!(detail.contains("revoked")),
        other => panic!("after revocation: {other:?}"),
    }

    // A full grant: the client checks the file against its digest.
    let full = grant_full(&c, &created).await;
    assert_eq!(
        agency.read_file(full, doc).await.unwrap(),
        pdf_bytes(9000, "guide")
    );

    // Deposits, signed with the issuer's key.
    let signed = sign_deposit(&issuer_key, clearance(&c.national_id, None)).unwrap();
    assert_eq!(
        agency.deposit(&signed, None).await.unwrap().status,
        "accepted"
    );
}

/// A `full` grant on one document.
async fn full_grant_on(c: &Citizen, agency: &Agency, doc: &str) -> String {
    grant(
        c,
        agency,
        json!({ "document_ids": [doc], "tier": "full", "purpose": "核验" }),
    )
    .await
}

async fn grant_full(c: &Citizen, agency: &Agency) -> uuid::Uuid {
    grant(
        c,
        agency,
        json!({ "document_types": ["business_license"], "tier": "full", "purpose": "纳税申报", "purpose_code": "tax_filing" }),
    )
    .await
    .parse()
    .unwrap()
}

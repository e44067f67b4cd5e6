//! Acting for someone else (SPEC §6): a delegate appointed by her principal acts within
//! the delegation's scope and nowhere else, with keys that follow the delegation (G5).

use custodia::ids::{CitizenId, DelegationId, DocumentId};
use custodia_crypto::{
    Aad, DataKey, DelegationKey, SymmetricKey, VaultKey, envelope, hpke_seal, wrap,
};
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, PASSPHRASE, licence_fields, pdf_bytes};
use crate::helpers::{Backend, TestApp, assert_problem, both_backends, national_id, spawn_app};
use custodia::agencies::Level;
use custodia::clock::Clock as _;

both_backends!(
    a_delegate_acts_within_scope_and_nowhere_else,
    a_delegate_uploads_and_the_principal_receives_it,
    a_delegation_ends_by_itself_and_its_keys_go,
    delegated_documents_open_only_with_the_delegates_vault,
    a_guardian_acts_for_a_minor_until_her_eighteenth_birthday,
    a_ward_without_an_account_is_held_and_handed_over_at_majority,
);

fn id_card_fields() -> Value {
    json!({
        "name": "张伟", "gender": "male", "birth_date": "1980-01-01", "address": "北京市东城区",
        "id_number": "11010519800101001X", "issuing_authority": "北京市公安局", "valid_from": "2015-06-01"
    })
}

/// A principal with a licence (and a file) and an ID card, a delegate appointed over
/// business licences with `actions`, accepted. Returns (principal, delegate, licence id,
/// ID card id, delegation id).
async fn appointed(
    app: &TestApp,
    n: u32,
    actions: &[&str],
) -> (Citizen, Citizen, String, String, String) {
    let principal = Citizen::register(app, &national_id(n), "Principal").await;
    let delegate = Citizen::register(app, &national_id(n + 1), "Delegate").await;
    let licence = principal
        .licence("委托公司", Some(pdf_bytes(5000, "delegated")))
        .await;
    let card: Value = principal
        .upload(None, "resident_id", id_card_fields(), None)
        .await
        .json()
        .await
        .unwrap();
    let card = card["id"].as_str().unwrap().to_owned();
    let made = principal
        .post(
            "/me/delegations",
            json!({
                "delegate_national_id": national_id(n + 1),
                "document_types": ["business_license"],
                "actions": actions,
                "duration_days": 30,
            }),
        )
        .await;
    assert_eq!(made.status(), 201, "appointed");
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["status"], "pending");
    assert_eq!(made["role"], "principal");
    let id = made["id"].as_str().unwrap().to_owned();

    // Nothing before she accepts.
    assert_problem(
        delegate
            .get_for(&principal.citizen_id, "/me/documents")
            .await,
        403,
    )
    .await;
    let accepted = delegate
        .post(&format!("/me/delegations/{id}/accept"), json!({}))
        .await;
    assert_eq!(accepted.status(), 200, "accepted");
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["status"], "active");
    assert_eq!(accepted["role"], "delegate");
    // Each side sees who the other is, with her own vault.
    assert_eq!(accepted["principal"]["display_name"], "Principal");
    let seen: Value = principal.get("/me/delegations").await.json().await.unwrap();
    assert_eq!(
        seen["delegations"][0]["delegate"]["display_name"],
        "Delegate"
    );
    (principal, delegate, licence, card, id)
}

async fn a_delegate_acts_within_scope_and_nowhere_else(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (principal, delegate, licence, card, delegation) =
        appointed(&app, 100, &["view", "answer_requests"]).await;
    let p = principal.citizen_id.clone();

    // She sees the licences, and only them.
    let docs: Value = delegate
        .get_for(&p, "/me/documents")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![licence.as_str()]);
    let opened = delegate
        .get_for(&p, &format!("/me/documents/{licence}"))
        .await;
    assert_eq!(opened.status(), 200);
    let opened: Value = opened.json().await.unwrap();
    assert_eq!(opened["fields"]["company_name"], "委托公司");
    let file = delegate
        .get_for(&p, &format!("/me/documents/{licence}/file"))
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.bytes().await.unwrap().as_ref(),
        pdf_bytes(5000, "delegated")
    );
    // The ID card is outside her scope: as absent as anyone else's.
    assert_problem(
        delegate.get_for(&p, &format!("/me/documents/{card}")).await,
        404,
    )
    .await;
    // Her own vault is still hers, without the header.
    let own: Value = delegate.get("/me/documents").await.json().await.unwrap();
    assert_eq!(own["documents"].as_array().unwrap().len(), 0);

    // An agency asks the principal; the delegate answers, and the grant is keyed as if
    // the principal had approved it.
    let agency = Agency::create(&app, "海淀区市场监管局", Level::Provincial).await;
    let asked: Value = agency
        .ask(&national_id(100), "fields", &["company_name"])
        .await
        .json()
        .await
        .unwrap();
    let request = asked["id"].as_str().unwrap();
    let inbox: Value = delegate
        .get_for(&p, "/me/requests")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inbox["requests"][0]["id"], request);
    let grant = delegate
        .post_for(&p, &format!("/me/requests/{request}/approve"), json!({}))
        .await;
    assert_eq!(grant.status(), 201, "approved by the delegate");
    let grant: Value = grant.json().await.unwrap();
    let grant_id = grant["id"].as_str().unwrap();
    // Her consent's receipt says a delegate gave it (the principal downloads it).
    let receipt: Value = principal
        .get(&format!("/me/grants/{grant_id}/receipt"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        receipt["receipt"]["consented_by_delegate"]
            .as_str()
            .is_some_and(|p| p.starts_with("p-")),
        "{receipt}"
    );
    let read = agency
        .read(&format!("/api/v1/grants/{grant_id}/documents/{licence}"))
        .await;
    assert_eq!(
        read.status(),
        200,
        "the agency reads under the delegate's grant"
    );
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["fields"]["company_name"], "委托公司");

    // Outside her actions: no upload, no grant, no revoke.
    assert_problem(
        delegate
            .upload_for(&p, "business_license", licence_fields("越权"), None)
            .await,
        403,
    )
    .await;
    assert_problem(
        delegate
            .post_for(
                &p,
                "/me/grants",
                json!({ "agency_id": agency.id, "document_types": ["business_license"],
                        "tier": "verify", "purpose": "越权", "duration_days": 1 }),
            )
            .await,
        403,
    )
    .await;
    assert_problem(
        delegate
            .post_for(&p, &format!("/me/grants/{grant_id}/revoke"), json!({}))
            .await,
        403,
    )
    .await;
    // Never the account: delegations, deletion, passkeys, the trail, the passphrase.
    assert_problem(
        delegate
            .post_for(
                &p,
                "/me/delegations",
                json!({ "delegate_national_id": national_id(102), "document_types": ["business_license"],
                        "actions": ["view"], "duration_days": 1 }),
            )
            .await,
        403,
    )
    .await;
    assert_problem(
        delegate
            .delete_for(&p, &format!("/me/documents/{licence}"))
            .await,
        403,
    )
    .await;
    assert_problem(delegate.get_for(&p, "/me/activity").await, 403).await;
    assert_problem(
        delegate
            .post_for(
                &p,
                "/me/passphrase",
                json!({ "current_passphrase": PASSPHRASE, "new_passphrase": "another long passphrase here" }),
            )
            .await,
        403,
    )
    .await;
    for (path, body) in [
        (
            "/vault/recover",
            json!({ "recovery_code": "x", "new_passphrase": "another long passphrase here" }),
        ),
        ("/vault/unlock", json!({ "passphrase": PASSPHRASE })),
        ("/me/passkeys/start", json!({})),
    ] {
        assert_problem(delegate.post_for(&p, path, body).await, 403).await;
    }
    assert_problem(delegate.get_for(&p, "/me").await, 403).await;
    // Acting for someone who gave her nothing.
    let stranger = Citizen::register(&app, &national_id(103), "Stranger").await;
    assert_problem(
        delegate
            .get_for(&stranger.citizen_id, "/me/documents")
            .await,
        403,
    )
    .await;
    assert_problem(delegate.get_for("not-an-id", "/me/documents").await, 422).await;
    // The pages' switch takes only a live delegation, and a refused switch sets nothing.
    let refused = delegate
        .post(
            "/me/acting-for",
            json!({ "principal": stranger.citizen_id }),
        )
        .await;
    assert!(refused.headers().get("set-cookie").is_none());
    assert_problem(refused, 403).await;
    assert_problem(
        delegate
            .post("/me/acting-for", json!({ "principal": "x" }))
            .await,
        422,
    )
    .await;
    let switched = delegate
        .post("/me/acting-for", json!({ "principal": p }))
        .await;
    assert_eq!(switched.status(), 200);
    assert!(
        switched.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("custodia-acting-for=")
    );

    // The principal's trail shows what the delegate did, as the delegate.
    let trail: Value = principal.get("/me/activity").await.json().await.unwrap();
    let approved = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "request.approve")
        .expect("the approval is in the principal's trail");
    assert_eq!(approved["actor_kind"], "delegate");

    // The principal ends it: the very next request is refused, and the keys are gone.
    let ended = principal
        .post(&format!("/me/delegations/{delegation}/end"), json!({}))
        .await;
    assert_eq!(ended.status(), 200);
    assert_problem(delegate.get_for(&p, "/me/documents").await, 403).await;
    let row = app
        .state
        .store
        .delegation(delegation.parse::<DelegationId>().unwrap())
        .await
        .unwrap();
    assert!(row.key_for_delegate.is_none() && row.key_for_principal.is_none());
    let licence_id: DocumentId = licence.parse().unwrap();
    assert!(
        app.state
            .store
            .delegation_wrap(row.id, licence_id, 1)
            .await
            .unwrap()
            .is_none()
    );
    // Ending twice says so.
    assert_problem(
        principal
            .post(&format!("/me/delegations/{delegation}/end"), json!({}))
            .await,
        409,
    )
    .await;
}

async fn a_delegate_uploads_and_the_principal_receives_it(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (principal, delegate, _, _, _) =
        appointed(&app, 110, &["view", "upload", "grant", "revoke"]).await;
    let p = principal.citizen_id.clone();
    // A type-scoped grant of the principal's: a licence stored later joins it.
    let agency = Agency::create(&app, "朝阳区市场监管局", Level::Provincial).await;
    let grant = principal
        .grant_to(
            &agency.id,
            json!({ "document_types": ["business_license"], "tier": "full", "purpose": "持续核验" }),
        )
        .await;

    let stored = delegate
        .upload_for(
            &p,
            "business_license",
            licence_fields("代办公司"),
            Some(("l.pdf", pdf_bytes(3000, "by-delegate"))),
        )
        .await;
    assert_eq!(stored.status(), 201, "stored by the delegate");
    let stored: Value = stored.json().await.unwrap();
    let doc = stored["id"].as_str().unwrap();
    // Outside her types: refused, nothing stored.
    assert_problem(
        delegate
            .upload_for(&p, "resident_id", id_card_fields(), None)
            .await,
        403,
    )
    .await;
    // She sees what she stored; so does the agency holding the type-scoped grant.
    let hers: Value = delegate
        .get_for(&p, &format!("/me/documents/{doc}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hers["fields"]["company_name"], "代办公司");
    let file = agency
        .read(&format!("/api/v1/grants/{grant}/documents/{doc}/file"))
        .await;
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.bytes().await.unwrap().as_ref(),
        pdf_bytes(3000, "by-delegate")
    );
    // The principal opens it with her own vault, and her trail names the delegate.
    let mine: Value = principal.get("/me/documents").await.json().await.unwrap();
    assert_eq!(mine["documents"].as_array().unwrap().len(), 3);
    let opened: Value = principal
        .get(&format!("/me/documents/{doc}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(opened["fields"]["company_name"], "代办公司");
    let trail: Value = principal.get("/me/activity").await.json().await.unwrap();
    assert!(
        trail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "document.upload" && e["actor_kind"] == "delegate")
    );
    // She gives a grant over what she stored, keyed from the delegation; and revokes it.
    let other = Agency::create(&app, "海淀区税务局", Level::Provincial).await;
    let given = delegate
        .post_for(
            &p,
            "/me/grants",
            json!({ "agency_id": other.id, "document_ids": [doc], "tier": "full",
                    "purpose": "代办核验", "duration_days": 3 }),
        )
        .await;
    assert_eq!(given.status(), 201, "granted by the delegate");
    let given: Value = given.json().await.unwrap();
    let given = given["id"].as_str().unwrap();
    let read = other
        .read(&format!("/api/v1/grants/{given}/documents/{doc}"))
        .await;
    assert_eq!(read.status(), 200);
    assert_problem(
        delegate
            .post_for(
                &p,
                "/me/grants",
                json!({ "agency_id": other.id, "document_types": ["resident_id"], "tier": "verify",
                        "purpose": "越权", "duration_days": 3 }),
            )
            .await,
        403,
    )
    .await;
    let revoked = delegate
        .post_for(&p, &format!("/me/grants/{given}/revoke"), json!({}))
        .await;
    assert_eq!(revoked.status(), 200);
    assert_problem(
        other
            .read(&format!("/api/v1/grants/{given}/documents/{doc}"))
            .await,
        403,
    )
    .await;

    // A licence the principal stores now joins the delegation at once.
    let later = principal.licence("后来公司", None).await;
    let seen: Value = delegate
        .get_for(&p, &format!("/me/documents/{later}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["fields"]["company_name"], "后来公司");
}

async fn a_delegation_ends_by_itself_and_its_keys_go(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (mut principal, mut delegate, licence, _, delegation) =
        appointed(&app, 120, &["view"]).await;
    let p = principal.citizen_id.clone();
    assert_eq!(
        delegate
            .get_for(&p, &format!("/me/documents/{licence}"))
            .await
            .status(),
        200
    );
    app.clock.advance(time::Duration::days(31));
    // Sessions ended too: both sign in again.
    delegate.login().await;
    principal.login().await;
    assert_eq!(principal.unlock(PASSPHRASE).await.status(), 200);
    // At once, before any sweep.
    assert_problem(
        delegate
            .get_for(&p, &format!("/me/documents/{licence}"))
            .await,
        403,
    )
    .await;
    let id: DelegationId = delegation.parse().unwrap();
    // The node's expiry timer may have ended it already; either way it ends once.
    assert!(
        custodia::delegations::sweep_expired(&app.state)
            .await
            .unwrap()
            <= 1
    );
    let row = app.state.store.delegation(id).await.unwrap();
    assert_eq!(row.status.as_str(), "expired");
    assert!(row.key_for_delegate.is_none());
    let listed: Value = principal.get("/me/delegations").await.json().await.unwrap();
    assert_eq!(listed["delegations"][0]["status"], "expired");
    // Bad appointments change nothing.
    let before = principal
        .get("/me/delegations")
        .await
        .json::<Value>()
        .await
        .unwrap()["delegations"]
        .as_array()
        .unwrap()
        .len();
    for (body, status) in [
        (
            json!({ "delegate_national_id": national_id(121), "document_types": ["business_license"], "actions": ["view"], "duration_days": 366 }),
            422,
        ),
        (
            json!({ "delegate_national_id": national_id(121), "document_types": [], "actions": ["view"], "duration_days": 3 }),
            422,
        ),
        (
            json!({ "delegate_national_id": national_id(121), "document_types": ["business_license"], "actions": ["fly"], "duration_days": 3 }),
            422,
        ),
        (
            json!({ "delegate_national_id": national_id(120), "document_types": ["business_license"], "actions": ["view"], "duration_days": 3 }),
            422,
        ),
        (
            json!({ "delegate_national_id": national_id(129), "document_types": ["business_license"], "actions": ["view"], "duration_days": 3 }),
            422,
        ),
        (
            json!({ "delegate_national_id": "123", "document_types": ["business_license"], "actions": ["view"], "duration_days": 3 }),
            422,
        ),
    ] {
        assert_problem(principal.post("/me/delegations", body).await, status).await;
    }
    let after = principal
        .get("/me/delegations")
        .await
        .json::<Value>()
        .await
        .unwrap()["delegations"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
}

/// G5: with the database and the master key (every service key), a delegation's documents
/// open only with the delegate's own vault key — and not even with it after the
/// delegation ends.
async fn delegated_documents_open_only_with_the_delegates_vault(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let (principal, _delegate, licence, _, delegation) = appointed(&app, 130, &["view"]).await;
    let id: DelegationId = delegation.parse().unwrap();
    let document: DocumentId = licence.parse().unwrap();
    let owner: CitizenId = principal.citizen_id.parse().unwrap();
    let delegate_id = app.state.store.delegation(id).await.unwrap().delegate_id;

    let vault_of = |citizen: CitizenId| {
        let ctx = app.state.clone();
        async move {
            let row = ctx.store.citizen(citizen).await.unwrap();
            let kdf: custodia_crypto::kdf::PassphraseKdf =
                serde_json::from_str(&row.passphrase_kdf).unwrap();
            let kek = kdf
                .derive(&custodia_crypto::Passphrase::new(PASSPHRASE.into()))
                .unwrap();
            let aad = Aad::new("vault-key")
                .with("citizen", row.id.as_bytes())
                .with("by", "passphrase");
            let vault: VaultKey = wrap::unwrap_key(&kek, &row.vault_key_passphrase, &aad).unwrap();
            (row, vault)
        }
    };
    // Opens the licence's fields through the delegation with a citizen's vault key.
    let opens_with = |vault: VaultKey, citizen: CitizenId| {
        let ctx = app.state.clone();
        async move {
            let me = ctx.store.citizen(citizen).await.ok()?;
            let secret = custodia::sealing::open_secret_key(&me, &vault).ok()?;
            let d = ctx.store.delegation(id).await.ok()?;
            let key: DelegationKey = hpke_seal::open_key(
                &secret,
                &custodia::sealing::delegation_key_aad(id, "delegate"),
                d.key_for_delegate.as_deref()?,
            )
            .ok()?;
            let wrapped = ctx.store.delegation_wrap(id, document, 1).await.ok()??;
            let data_key: DataKey = wrap::unwrap_key(
                &key,
                &wrapped,
                &custodia::sealing::delegation_data_key_aad(id, document, 1),
            )
            .ok()?;
            let v = ctx.store.document_versions(document).await.ok()?;
            let meta = envelope::open(
                &data_key,
                &custodia::sealing::document_aad("document-meta", document, 1, owner),
                v[0].meta_enc.as_deref()?,
            )
            .ok()?;
            Some(String::from_utf8_lossy(&meta).contains("委托公司"))
        }
    };
    let (_, delegate_vault) = vault_of(delegate_id).await;
    assert_eq!(
        opens_with(delegate_vault.clone(), delegate_id).await,
        Some(true),
        "the delegate's vault opens what is delegated"
    );
    // The server's own keys open nothing of it: every service key is tried as the vault.
    for (name, key) in [
        ("grant-wrap", app.state.keys.grant_wrap.expose()),
        ("blind-index", app.state.keys.blind_index.expose()),
    ] {
        let as_vault = VaultKey::from_bytes(*key);
        assert_eq!(
            opens_with(as_vault, delegate_id).await,
            None,
            "the {name} service key opens nothing"
        );
    }
    // Nor does the principal's own vault through the delegate's sealed key (she holds the
    // key wrapped for her, not the delegate's private key).
    let (_, principal_vault) = vault_of(owner).await;
    assert_eq!(opens_with(principal_vault, owner).await, None);

    // Ended: not even the delegate's vault opens it.
    let ended = principal
        .post(&format!("/me/delegations/{delegation}/end"), json!({}))
        .await;
    assert_eq!(ended.status(), 200);
    assert_eq!(opens_with(delegate_vault, delegate_id).await, None);
}

async fn authority(app: &TestApp, name: &str, guardianship: bool) -> Agency {
    let created = custodia::agencies::create(
        &app.state,
        &custodia::agencies::NewAgency {
            name,
            level: Level::Municipal,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: guardianship,
            emergency: false,
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

async fn a_guardian_acts_for_a_minor_until_her_eighteenth_birthday(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let court = authority(&app, "东城区人民法院", true).await;
    let bureau = authority(&app, "东城区市场监管局", false).await;
    // A ward who turns 18 in ten days (by the server's clock), and an adult guardian.
    let now =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(app.clock.now_ms()) * 1_000_000)
            .unwrap();
    let born = (now + time::Duration::days(10)).date();
    let born = time::Date::from_calendar_date(born.year() - 18, born.month(), born.day()).unwrap();
    let birth = format!(
        "{:04}{:02}{:02}",
        born.year(),
        u8::from(born.month()),
        born.day()
    );
    let ward_nid = crate::ids::national_id(&birth, 140);
    let mut ward = Citizen::register(&app, &ward_nid, "Ward").await;
    let licence = ward.licence("监护公司", None).await;
    let mut guardian = Citizen::register(&app, &national_id(141), "Guardian").await;
    let w = ward.citizen_id.clone();
    let declare = json!({
        "ward_national_id": ward_nid,
        "guardian_national_id": national_id(141),
        "basis": "(2026)京0101民特12号",
        "expires_at": (now + time::Duration::days(365))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    });
    // Only an authority declares.
    assert_problem(
        bureau.post("/api/v1/guardianships", declare.clone()).await,
        403,
    )
    .await;
    let declared = court.post("/api/v1/guardianships", declare.clone()).await;
    assert_eq!(declared.status(), 201);
    let declared: Value = declared.json().await.unwrap();
    assert_eq!(declared["status"], "active");
    assert_eq!(declared["ends_at_majority"], true);
    let gid = declared["id"].as_str().unwrap().to_owned();
    // Another authority cannot see or withdraw it.
    let other_court = authority(&app, "西城区人民法院", true).await;
    assert_problem(
        other_court
            .get(&format!("/api/v1/guardianships/{gid}"))
            .await,
        404,
    )
    .await;

    // The guardian sees the ward's documents at once, but their keys come only with the
    // ward's next unlock.
    let listed: Value = guardian
        .get_for(&w, "/me/documents")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["documents"][0]["id"], licence.as_str());
    assert_problem(
        guardian
            .get_for(&w, &format!("/me/documents/{licence}"))
            .await,
        409,
    )
    .await;
    ward.login().await;
    assert_eq!(ward.unlock(PASSPHRASE).await.status(), 200);
    let opened = guardian
        .get_for(&w, &format!("/me/documents/{licence}"))
        .await;
    assert_eq!(opened.status(), 200);
    // Never the ward's account, and not hers to end.
    let delegations: Value = guardian.get("/me/delegations").await.json().await.unwrap();
    let delegation = delegations["delegations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        delegations["delegations"][0]["principal"]["display_name"],
        "Ward"
    );
    assert_problem(
        guardian
            .post(&format!("/me/delegations/{delegation}/end"), json!({}))
            .await,
        403,
    )
    .await;
    assert_problem(
        guardian
            .delete_for(&w, &format!("/me/documents/{licence}"))
            .await,
        403,
    )
    .await;

    // The 18th birthday: refused from that moment, keys destroyed by the timer's sweep.
    app.clock.advance(time::Duration::days(10));
    guardian.login().await;
    assert_problem(
        guardian
            .get_for(&w, &format!("/me/documents/{licence}"))
            .await,
        403,
    )
    .await;
    custodia::delegations::sweep_expired(&app.state)
        .await
        .unwrap();
    let seen: Value = court
        .get(&format!("/api/v1/guardianships/{gid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "expired");

    // An adult's guardianship lasts until withdrawn; withdrawal holds at once.
    let adult = Citizen::register(&app, &national_id(142), "Adult ward").await;
    let declared: Value = court
        .post(
            "/api/v1/guardianships",
            json!({
                "ward_national_id": national_id(142),
                "guardian_national_id": national_id(141),
                "basis": "(2026)京0101民特13号",
                "expires_at": (now + time::Duration::days(400))
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            }),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(declared["ends_at_majority"], false);
    let gid = declared["id"].as_str().unwrap();
    assert_eq!(
        guardian
            .get_for(&adult.citizen_id, "/me/documents")
            .await
            .status(),
        200
    );
    let withdrawn = court.delete(&format!("/api/v1/guardianships/{gid}")).await;
    assert_eq!(withdrawn.status(), 200);
    assert_problem(
        guardian.get_for(&adult.citizen_id, "/me/documents").await,
        403,
    )
    .await;
    // Bad declarations change nothing.
    for body in [
        json!({ "ward_national_id": national_id(143), "guardian_national_id": national_id(141), "basis": "x", "expires_at": "2030-01-01T00:00:00Z" }),
        json!({ "ward_national_id": national_id(142), "guardian_national_id": national_id(142), "basis": "x", "expires_at": "2030-01-01T00:00:00Z" }),
        json!({ "ward_national_id": national_id(142), "guardian_national_id": national_id(141), "basis": "", "expires_at": "2030-01-01T00:00:00Z" }),
        json!({ "ward_national_id": national_id(142), "guardian_national_id": national_id(141), "basis": "x", "expires_at": "2001-01-01T00:00:00Z" }),
    ] {
        assert_problem(court.post("/api/v1/guardianships", body).await, 422).await;
    }
}

/// The national ID of someone who turns 18 in `days` days by the server's clock.
fn turning_18_in(app: &TestApp, days: i64, seq: u32) -> (String, time::OffsetDateTime) {
    let now =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(app.clock.now_ms()) * 1_000_000)
            .unwrap();
    let day = (now + time::Duration::days(days)).date();
    let born = time::Date::from_calendar_date(day.year() - 18, day.month(), day.day()).unwrap();
    let birth = format!(
        "{:04}{:02}{:02}",
        born.year(),
        u8::from(born.month()),
        born.day()
    );
    (crate::ids::national_id(&birth, seq), now)
}

async fn a_ward_without_an_account_is_held_and_handed_over_at_majority(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let court = authority(&app, "朝阳区人民法院", true).await;
    let (ward_nid, now) = turning_18_in(&app, 10, 150);
    let mut guardian = Citizen::register(&app, &national_id(151), "Guardian").await;
    let mut declare = json!({
        "ward_national_id": ward_nid,
        "guardian_national_id": national_id(151),
        "basis": "(2026)京0105民特7号",
        "expires_at": (now + time::Duration::days(300))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    });
    // Without an account, her name is needed to make one.
    assert_problem(
        court.post("/api/v1/guardianships", declare.clone()).await,
        422,
    )
    .await;
    declare["ward_display_name"] = json!("小明");
    let declared = court.post("/api/v1/guardianships", declare).await;
    assert_eq!(declared.status(), 201);
    let declared: Value = declared.json().await.unwrap();
    assert_eq!(declared["account_held"], true);
    assert_eq!(declared["ends_at_majority"], true);

    // The guardian holds the account from the start: keys at once, and the hand-over code.
    let mine: Value = guardian.get("/me/delegations").await.json().await.unwrap();
    let held = &mine["delegations"][0];
    assert_eq!(held["keyed"], true);
    assert_eq!(held["principal"]["display_name"], "小明");
    let handover = held["handover_code"]
        .as_str()
        .expect("the hand-over code")
        .to_owned();
    let ward_id = held["principal"]["citizen_id"].as_str().unwrap().to_owned();
    let stored = guardian
        .upload_for(
            &ward_id,
            "business_license",
            licence_fields("小明工作室"),
            None,
        )
        .await;
    assert_eq!(stored.status(), 201, "the guardian stores for the ward");
    let doc = stored.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        guardian
            .get_for(&ward_id, &format!("/me/documents/{doc}"))
            .await
            .status(),
        200
    );

    // Majority: the guardian is out.
    app.clock.advance(time::Duration::days(10));
    guardian.login().await;
    assert_problem(
        guardian
            .get_for(&ward_id, &format!("/me/documents/{doc}"))
            .await,
        403,
    )
    .await;

    // The ward enrols a passkey in person (a re-enrolment of the held account), then
    // recovers her vault with the code her guardian hands her: the key rotates.
    let code = crate::citizen_kit::enrolment_code(&app, &ward_nid).await;
    let mut ward = Citizen::unregistered(&app.base, &ward_nid, "小明", &code);
    let enrolled = ward.finish_registration().await;
    assert_eq!(enrolled.status(), 200, "the ward enrols her passkey");
    let enrolled: Value = enrolled.json().await.unwrap();
    assert_eq!(enrolled["citizen_id"], ward_id.as_str());
    ward.citizen_id = ward_id.clone();
    ward.csrf = enrolled["csrf_token"].as_str().unwrap().to_owned();
    let recovered = ward
        .post(
            "/vault/recover",
            json!({ "recovery_code": handover, "new_passphrase": "my own vault from today on" }),
        )
        .await;
    assert_eq!(
        recovered.status(),
        200,
        "the hand-over code opens her vault once"
    );
    let docs: Value = ward.get("/me/documents").await.json().await.unwrap();
    assert_eq!(docs["documents"][0]["id"], doc.as_str());
    let opened: Value = ward
        .get(&format!("/me/documents/{doc}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(opened["fields"]["company_name"], "小明工作室");
    // The code was spent: the vault key it opened is gone.
    let again = ward
        .post(
            "/vault/recover",
            json!({ "recovery_code": held["handover_code"], "new_passphrase": "another passphrase of mine" }),
        )
        .await;
    assert_problem(again, 403).await;
    let trail: Value = ward.get("/me/activity").await.json().await.unwrap();
    assert!(
        trail["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "vault.recover")
    );
}

//! Auditors: enrolment from a one-time link with a passkey, search, charts and flags,
//! export, verification, and the reasoned reveal — every query of theirs recorded; nobody
//! else gets in.

use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};

use crate::agency_kit::Agency;
use crate::citizen_kit::{Citizen, origin};
use crate::helpers::{Backend, TestApp, assert_problem, both_backends, national_id, spawn_app};

both_backends!(an_auditor_enrols_investigates_reveals_and_exports);
both_backends!(console_flags_count_every_event_of_the_week_in_the_database);

pub(crate) struct Auditor {
    pub(crate) http: reqwest::Client,
    base: String,
    pub(crate) csrf: String,
    authenticator: SoftPasskey,
}

impl Auditor {
    pub(crate) async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap().to_owned()
}

async fn enrol(app: &TestApp, link: &str) -> Result<Auditor, reqwest::Response> {
    enrol_at(&app.base, link).await
}

/// Enrols with a fresh software passkey from the invitation link, against any server.
pub(crate) async fn enrol_at(base: &str, link: &str) -> Result<Auditor, reqwest::Response> {
    let mut a = Auditor {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap(),
        base: base.to_owned(),
        csrf: String::new(),
        authenticator: SoftPasskey::new(true),
    };
    let start = a
        .post(
            "/audit/auth/enrol/start",
            json!({ "token": token_of(link) }),
        )
        .await;
    if start.status() != 200 {
        return Err(start);
    }
    let options: CreationChallengeResponse = start.json().await.unwrap();
    let credential = a.authenticator.do_registration(origin(), options).unwrap();
    let done = a
        .post(
            "/audit/auth/enrol/finish",
            json!({ "credential": credential }),
        )
        .await;
    if done.status() != 200 {
        return Err(done);
    }
    let body: Value = done.json().await.unwrap();
    a.csrf = body["csrf_token"].as_str().unwrap().to_owned();
    Ok(a)
}

async fn an_auditor_enrols_investigates_reveals_and_exports(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    // Some activity to investigate: a citizen, an agency, reads and a refusal.
    let agency = Agency::create(&app, "审计对象局", custodia::agencies::Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(501), "Investigated").await;
    let doc = c.licence("调查公司", None).await;
    let g = c
        .grant_to(
            &agency.id,
            json!({ "document_ids": [doc], "tier": "verify", "purpose": "核验" }),
        )
        .await;
    assert_eq!(
        agency
            .read(&format!("/api/v1/grants/{g}/documents/{doc}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        agency
            .read(&format!("/api/v1/grants/{g}/documents/{doc}/file"))
            .await
            .status(),
        403
    );

    // The operator invites; the link enrols one passkey, once.
    let link = custodia::auditors::invite(&app.state, "李审计")
        .await
        .unwrap();
    assert!(link.starts_with("http://localhost:8080/audit/enrol?token="));
    let page = app
        .get(&format!("/audit/enrol?token={}", token_of(&link)))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("李审计"));
    let mut auditor = enrol(&app, &link)
        .await
        .unwrap_or_else(|r| panic!("enrol: {}", r.status()));
    assert_problem(enrol(&app, &link).await.err().unwrap(), 401).await;
    // An expired link does nothing.
    let stale = custodia::auditors::invite(&app.state, "过期审计")
        .await
        .unwrap();
    app.clock.advance(time::Duration::hours(73));
    assert_problem(enrol(&app, &stale).await.err().unwrap(), 401).await;
    app.clock.advance(time::Duration::hours(-73));
    assert!(
        custodia::auditors::invite(&app.state, "李审计")
            .await
            .is_err(),
        "names are unique"
    );

    // Search: the refusal is found by outcome; the query itself is recorded.
    let found: Value = auditor
        .get(&format!(
            "/api/v1/audit/events?agency={}&outcome=refused",
            agency.id
        ))
        .await
        .json()
        .await
        .unwrap();
    let events = found["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{found:#}");
    assert_eq!(events[0]["action"], "document.file");
    assert_eq!(events[0]["officer_id"], "officer-7");
    let pseudonym = events[0]["citizen"].as_str().unwrap().to_owned();
    let queries: Value = auditor
        .get("/api/v1/audit/events?action=audit.query")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        queries["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor_kind"] == "auditor"
                && e["detail"].as_str().unwrap().contains("refused"))
    );
    assert_problem(
        auditor.get("/api/v1/audit/events?since=yesterday").await,
        422,
    )
    .await;

    // The console cannot reveal a national ID (nobody on the server can); it confirms or
    // refutes the one a case names, for a written reason, and records question and answer.
    assert_problem(
        auditor
            .post(
                "/api/v1/audit/reveal",
                json!({ "pseudonym": pseudonym, "reason": "案件 2026-17：核查越权读取投诉" }),
            )
            .await,
        404,
    )
    .await;
    let ask = |national_id: String, reason: &'static str| {
        let auditor = &auditor;
        let pseudonym = pseudonym.clone();
        async move {
            auditor
                .post(
                    "/api/v1/audit/confirm-identity",
                    json!({ "pseudonym": pseudonym, "national_id": national_id, "reason": reason }),
                )
                .await
        }
    };
    assert_problem(ask(c.national_id.clone(), "why").await, 422).await;
    assert_problem(
        ask("12345".into(), "案件 2026-17：核查越权读取投诉").await,
        422,
    )
    .await;
    let confirmed: Value = ask(c.national_id.clone(), "案件 2026-17：核查越权读取投诉")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["matches"], true);
    let refuted: Value = ask(national_id(999), "案件 2026-17：核查另一号码")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refuted["matches"], false);
    let asked: Value = auditor
        .get(&format!(
            "/api/v1/audit/events?action=audit.confirm-identity&citizen={pseudonym}"
        ))
        .await
        .json()
        .await
        .unwrap();
    let details: Vec<&str> = asked["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details.contains(&"confirmed; 案件 2026-17：核查越权读取投诉")
            && details.contains(&"refuted; 案件 2026-17：核查另一号码"),
        "{details:?}"
    );
    assert_problem(
        auditor
            .post(
                "/api/v1/audit/confirm-identity",
                json!({ "pseudonym": "p-nobody", "national_id": c.national_id, "reason": "案件 2026-18：核查" }),
            )
            .await,
        404,
    )
    .await;
    let refused: Value = auditor
        .get("/api/v1/audit/events?action=audit.confirm-identity&outcome=refused")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        refused["events"].as_array().unwrap().len(),
        1,
        "a question about an unknown pseudonym is recorded too"
    );
    // The citizen sees that their identity was asked about, and why.
    let theirs: Value = c
        .get("/me/activity?action=audit.confirm-identity")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["events"].as_array().unwrap().len(), 2, "{theirs:#}");

    // Verify and export.
    let verified: Value = auditor
        .get("/api/v1/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["intact"], true, "{verified:#}");
    let csv = auditor.get("/api/v1/audit/export?format=csv").await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("seq,at,actor_kind,") && csv.contains("document.read"));
    assert!(
        !csv.contains(&c.national_id),
        "no national ID in the export"
    );
    let jsonl = auditor
        .get("/api/v1/audit/export")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        jsonl
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );

    // The console: chain status, charts, flags, search, reveal form.
    let console = auditor.get("/audit").await.text().await.unwrap();
    assert!(console.contains("last signed checkpoint"));
    let verified = auditor.get("/audit?verify=1").await.text().await.unwrap();
    assert!(verified.contains("id=\"chain-status\"") && verified.contains("✓"));
    assert!(console.contains("/audit/chart/reads.svg") && console.contains("confirm-form"));
    assert!(console.contains("document.read"));
    let chart = auditor
        .get("/audit/chart/refusals.svg")
        .await
        .text()
        .await
        .unwrap();
    assert!(chart.contains("审计对象局"));

    // Only auditors: a citizen is refused, and the auditor cannot act as a citizen.
    assert_problem(c.get("/api/v1/audit/events").await, 403).await;
    assert_problem(c.get("/api/v1/audit/export").await, 403).await;
    let redirected = c.get("/audit").await;
    assert!(redirected.url().path().ends_with("/audit/login"));
    assert_problem(auditor.get("/me/documents").await, 403).await;
    let signed_out = reqwest::get(format!("{}/api/v1/audit/verify", app.base))
        .await
        .unwrap();
    assert_problem(signed_out, 401).await;

    // Sign in again by name with the passkey.
    auditor.http = app.new_client();
    let start = auditor
        .post("/audit/auth/login/start", json!({ "name": "李审计" }))
        .await;
    let options: RequestChallengeResponse = start.json().await.unwrap();
    let credential = auditor
        .authenticator
        .do_authentication(origin(), options)
        .unwrap();
    let done = auditor
        .post(
            "/audit/auth/login/finish",
            json!({ "credential": credential }),
        )
        .await;
    assert_eq!(done.status(), 200);
    assert_eq!(auditor.get("/audit").await.status(), 200);
}

/// The console's flags are counted by the database over the whole week: one officer reading
/// many citizens within an hour, reads at night in UTC+8, bursts of refusals — and nothing
/// for ordinary work, refusals spread over hours, or what happened before the week.
async fn console_flags_count_every_event_of_the_week_in_the_database(backend: Backend) {
    use custodia::audit::{Action, ActorKind, Event, Outcome};
    use custodia::auditors::{FLAG_WINDOW_MS, MANY_CITIZENS_PER_HOUR, REFUSALS_PER_BURST, flags};

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;
    let (_env, app) = spawn_app(backend).await;
    let move_to = |at: i64| {
        let now = app.state.clock.now_ms();
        assert!(at >= now);
        app.clock.advance(time::Duration::milliseconds(at - now));
    };
    let event = |agency: &str, officer: &str, citizen: &str, outcome: Outcome| {
        Event::new(ActorKind::Agency, Some(agency.into()), Action::DocumentRead)
            .officer(Some(officer), Some("case-1"))
            .citizen(Some(citizen))
            .outcome(outcome)
    };
    let append = |e: Event| {
        let audit = app.state.audit.clone();
        async move { audit.append(e).await.unwrap() }
    };

    // A night read nine days ago (16:00 UTC = midnight in Beijing): outside the week.
    let first_day = (app.state.clock.now_ms() / DAY + 1) * DAY;
    move_to(first_day + 16 * HOUR);
    append(event("agency-old", "o-old", "p-old", Outcome::Ok)).await;

    // Nine days later, 02:00 UTC = 10:00 in Beijing.
    let morning = first_day + 9 * DAY + 2 * HOUR;
    move_to(morning);
    // Ordinary work: five citizens.
    for i in 0..5 {
        append(event("agency-1", "o-1", &format!("p-{i}"), Outcome::Ok)).await;
    }
    // A burst: five refusals within two and a half minutes.
    for i in 0..5 {
        move_to(morning + i * 30_000);
        append(event("agency-2", "o-4", "p-1", Outcome::Refused)).await;
    }
    // One officer, twelve citizens, twelve minutes.
    for i in 0..12 {
        move_to(morning + 3 * 60_000 + i * 60_000);
        append(event("agency-1", "o-2", &format!("q-{i}"), Outcome::Ok)).await;
    }
    // Refusals an hour apart: no burst.
    for i in 0..5 {
        move_to(morning + HOUR + i * HOUR);
        append(event("agency-3", "o-5", "p-2", Outcome::Refused)).await;
    }
    // Midnight in Beijing.
    move_to(morning + 14 * HOUR);
    append(event("agency-1", "o-3", "p-3", Outcome::Ok)).await;

    let since = app.state.clock.now_ms() - FLAG_WINDOW_MS;
    let counts = app
        .state
        .store
        .audit_flag_counts(since, MANY_CITIZENS_PER_HOUR, REFUSALS_PER_BURST)
        .await
        .unwrap();
    let found: Vec<(&str, Option<String>, Option<String>)> = flags(&counts)
        .into_iter()
        .map(|f| (f.kind, f.agency, f.officer))
        .collect();
    assert_eq!(
        found,
        [
            ("many-citizens", Some("agency-1".into()), Some("o-2".into())),
            ("night-reads", Some("agency-1".into()), Some("o-3".into())),
            ("refusal-burst", Some("agency-2".into()), None),
        ]
    );
    assert_eq!(counts.many_citizens[0].3, 12);
    assert_eq!(counts.night_reads[0].2, 1);
    assert_eq!(counts.refusal_bursts[0].1, 5);
}

//! Agencies hear back (SPEC §6): signed webhooks to a real HTTP receiver started here —
//! every event arrives signed and verifies; failures are retried with back-off until a dead
//! letter the agency replays; two nodes deliver each event once; private addresses are
//! refused; and acknowledgements of ends and deletions are recorded, with overdue ones
//! shown to auditors and to the citizen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use custodia::agencies::Level;
use custodia::clock::Clock as _;
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::auditors::enrol_at;
use crate::citizen_kit::Citizen;
use crate::helpers::{
    Backend, TestApp, TestEnv, assert_problem, both_backends, national_id, recorded,
};

both_backends!(
    every_event_arrives_signed_and_verifies,
    a_failing_receiver_is_retried_then_dead_lettered_and_replayed,
    two_nodes_deliver_each_event_once,
    private_and_plain_addresses_are_refused,
    acknowledgements_are_recorded_and_overdue_ones_shown,
);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    key_id: String,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An agency's webhook receiver on loopback: records every request, answers 503 to the
/// next `fail_next` ones (or to all while `fail_always`), 204 otherwise.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    fail_next: Arc<AtomicUsize>,
    fail_always: Arc<AtomicBool>,
}

async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let failing = r.fail_always.load(Ordering::SeqCst)
        || r.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let answered = if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    };
    r.got.lock().unwrap().push(Received {
        id: header("custodia-webhook-id"),
        timestamp: header("custodia-webhook-timestamp"),
        signature: header("custodia-webhook-signature"),
        key_id: header("custodia-webhook-key-id"),
        body: body.to_vec(),
        answered: answered.as_u16(),
    });
    answered
}

impl Receiver {
    async fn start() -> (Self, String) {
        let r = Self::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Events answered 2xx, by type.
    fn delivered(&self, event_type: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.answered == 204 && r.event()["type"] == event_type)
            .collect()
    }

    /// Waits (up to 20 s) until `done` holds.
    async fn until(&self, what: &str, done: impl Fn(&Self) -> bool) {
        for _ in 0..200 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the receiver never got {what}: {:#?}", self.all());
    }
}

/// A server that admits loopback receivers, as `CUSTODIA_WEBHOOK_ALLOW_LOOPBACK=true` does.
async fn loopback_env(backend: Backend) -> TestEnv {
    let mut env = TestEnv::new(backend).await;
    env.vars
        .insert("CUSTODIA_WEBHOOK_ALLOW_LOOPBACK".into(), "true".into());
    env
}

async fn subscribed(app: &TestApp, name: &str, url: &str) -> Agency {
    let agency = Agency::create(app, name, Level::Provincial).await;
    let added = agency.post("/api/v1/webhooks", json!({ "url": url })).await;
    assert_eq!(added.status(), 201, "webhook added");
    let listed: Value = agency.get("/api/v1/webhooks").await.json().await.unwrap();
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    agency
}

/// The agency asks for the licence and the citizen approves; returns the grant id.
async fn approved(agency: &Agency, c: &Citizen) -> String {
    let asked: Value = agency
        .ask(&c.national_id, "verify", &[])
        .await
        .json()
        .await
        .unwrap();
    let id = asked["id"].as_str().unwrap();
    let approved = c
        .post(&format!("/me/requests/{id}/approve"), json!({}))
        .await;
    assert_eq!(approved.status(), 201);
    approved.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until the server has recorded `tries` tries of the agency's `event_type`
/// delivery (so a clock moved after this counts from the last try's record).
async fn recorded_tries(agency: &Agency, event_type: &str, tries: i32) {
    for _ in 0..200 {
        let listed: Value = agency
            .get("/api/v1/webhooks/deliveries")
            .await
            .json()
            .await
            .unwrap();
        if listed["deliveries"].as_array().unwrap().iter().any(|d| {
            d["event_type"] == event_type && d["attempts"].as_i64() >= Some(i64::from(tries))
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{event_type} was never tried {tries} time(s)");
}

/// The agency's deliveries in `status`, once there is at least one: a delivery's outcome is
/// recorded after the receiver has answered, so a test that saw the answer waits for it.
async fn deliveries_with_status(agency: &Agency, status: &str) -> Vec<Value> {
    for _ in 0..200 {
        let listed: Value = agency
            .get(&format!("/api/v1/webhooks/deliveries?status={status}"))
            .await
            .json()
            .await
            .unwrap();
        let deliveries = listed["deliveries"].as_array().unwrap();
        if !deliveries.is_empty() {
            return deliveries.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no delivery was ever recorded as {status}");
}

async fn every_event_arrives_signed_and_verifies(backend: Backend) {
    let env = loopback_env(backend).await;
    let app = env.start().await.unwrap();
    let (rx, url) = Receiver::start().await;
    let agency = subscribed(&app, "回调税务局", &url).await;
    let c = Citizen::register(&app, &national_id(940), "回调公民").await;
    let doc = c.licence("回调公司", None).await;

    // request.decided (approved, then denied), grant.revoked, grant.exhausted,
    // retention.due (a grant kept for no days, revoked), grant.expired.
    let g1 = approved(&agency, &c).await;
    let asked: Value = agency
        .ask(&c.national_id, "verify", &[])
        .await
        .json()
        .await
        .unwrap();
    let denied = asked["id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.post(&format!("/me/requests/{denied}/deny"), json!({}))
            .await
            .status(),
        204
    );
    assert_eq!(
        c.post(&format!("/me/grants/{g1}/revoke"), json!({}))
            .await
            .status(),
        200
    );
    let once = c
        .grant_to(
            &agency.id,
            json!({ "document_ids": [doc], "tier": "verify", "purpose": "核验一次", "max_reads": 1 }),
        )
        .await;
    assert_eq!(
        agency
            .read(&format!("/api/v1/grants/{once}/documents/{doc}"))
            .await
            .status(),
        200
    );
    let unkept = c
        .grant_to(
            &agency.id,
            json!({ "document_ids": [doc], "tier": "verify", "purpose": "不留存", "retention_days": 0 }),
        )
        .await;
    c.post(&format!("/me/grants/{unkept}/revoke"), json!({}))
        .await;
    let short = c
        .grant_to(
            &agency.id,
            json!({ "document_ids": [doc], "tier": "verify", "purpose": "一天", "duration_days": 1 }),
        )
        .await;
    app.clock.advance(time::Duration::days(2));

    for kind in [
        "request.decided",
        "grant.revoked",
        "grant.exhausted",
        "grant.expired",
        "retention.due",
    ] {
        rx.until(kind, |r| !r.delivered(kind).is_empty()).await;
    }
    rx.until("both decisions", |r| {
        r.delivered("request.decided").len() == 2
    })
    .await;

    // Each is signed with the service key, names its key, and verifies over the body.
    let key = app.state.keys.signing.verifying_key();
    for r in rx.all() {
        assert_eq!(r.key_id, app.state.keys.signing_key_id);
        let at: i64 = r.timestamp.parse().unwrap();
        assert_eq!(
            custodia::client::verify_webhook(&key, &r.timestamp, &r.signature, &r.body, at),
            Ok(())
        );
        // A tampered body, or a replay long after, does not.
        let mut tampered = r.body.clone();
        tampered[2] ^= 1;
        assert!(
            custodia::client::verify_webhook(&key, &r.timestamp, &r.signature, &tampered, at)
                .is_err()
        );
        assert_eq!(
            custodia::client::verify_webhook(&key, &r.timestamp, &r.signature, &r.body, at + 600),
            Err(custodia::client::WebhookRefused::Stale)
        );
        let event = r.event();
        assert_eq!(event["id"], r.id.as_str(), "the header names the event");
        // Ids, never personal data.
        let text = String::from_utf8_lossy(&r.body);
        for personal in [c.national_id.as_str(), "回调公民", "回调公司"] {
            assert!(!text.contains(personal), "{text}");
        }
    }
    let decisions: Vec<(Value, Value)> = rx
        .delivered("request.decided")
        .iter()
        .map(|r| {
            (
                r.event()["data"]["status"].clone(),
                r.event()["data"]["grant_id"].clone(),
            )
        })
        .collect();
    assert!(decisions.contains(&(json!("approved"), json!(g1))));
    assert!(decisions.contains(&(json!("denied"), Value::Null)));
    let of = |kind: &str| -> Vec<Value> {
        rx.delivered(kind)
            .iter()
            .map(|r| r.event()["data"]["grant_id"].clone())
            .collect()
    };
    assert!(of("grant.revoked").contains(&json!(g1)));
    assert!(of("grant.revoked").contains(&json!(unkept)));
    assert_eq!(of("grant.exhausted"), vec![json!(once)]);
    assert_eq!(of("grant.expired"), vec![json!(short)]);
    assert!(of("retention.due").contains(&json!(unkept)));
    // Each event went out once.
    let mut seen = HashMap::new();
    for r in rx.all() {
        *seen.entry(r.id.clone()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
}

async fn a_failing_receiver_is_retried_then_dead_lettered_and_replayed(backend: Backend) {
    let env = loopback_env(backend).await;
    let app = env.start().await.unwrap();
    let (rx, url) = Receiver::start().await;
    let agency = subscribed(&app, "重试局", &url).await;
    let mut c = Citizen::register(&app, &national_id(950), "重试公民").await;
    c.licence("重试公司", None).await;

    // Fails three times, then takes the event on the fourth try.
    rx.fail_next.store(3, Ordering::SeqCst);
    let g = approved(&agency, &c).await;
    for tries in 1..=3 {
        recorded_tries(&agency, "request.decided", tries).await;
        app.clock.advance(time::Duration::hours(1));
    }
    rx.until("the fourth try", |r| {
        r.delivered("request.decided").len() == 1
    })
    .await;
    let tried = rx.all();
    assert_eq!(tried.len(), 4, "three refusals and one delivery");
    assert!(
        tried.iter().all(|r| r.id == tried[0].id),
        "one event, retried"
    );
    // The receiver has answered before the server records the outcome: wait for the record.
    let listed = deliveries_with_status(&agency, "delivered").await;
    assert_eq!(listed[0]["attempts"], 4);

    // Always failing: dead after the last try, and listed as a dead letter.
    rx.fail_always.store(true, Ordering::SeqCst);
    c.login().await;
    assert_eq!(
        c.post(&format!("/me/grants/{g}/revoke"), json!({}))
            .await
            .status(),
        200
    );
    for tries in 1..=custodia::webhooks::MAX_ATTEMPTS {
        recorded_tries(&agency, "grant.revoked", tries).await;
        app.clock.advance(time::Duration::hours(1));
    }
    let dead = deliveries_with_status(&agency, "dead").await;
    let letter = &dead[0];
    assert_eq!(letter["event_type"], "grant.revoked");
    assert_eq!(letter["attempts"], custodia::webhooks::MAX_ATTEMPTS);
    assert_eq!(letter["last_status"], 503);
    // Nothing more is tried.
    let tried = rx.all().len();
    app.clock.advance(time::Duration::hours(2));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.all().len(), tried);

    // The agency fixes its receiver and replays the dead letter.
    rx.fail_always.store(false, Ordering::SeqCst);
    let id = letter["id"].as_str().unwrap();
    assert_problem(
        agency
            .post(
                &format!(
                    "/api/v1/webhooks/deliveries/{}/replay",
                    uuid::Uuid::new_v4()
                ),
                json!({}),
            )
            .await,
        404,
    )
    .await;
    let replayed = agency
        .post(
            &format!("/api/v1/webhooks/deliveries/{id}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(replayed.status(), 202);
    rx.until("the replay", |r| r.delivered("grant.revoked").len() == 1)
        .await;
    assert_eq!(rx.delivered("grant.revoked")[0].id, id);
    // Another agency neither sees nor replays it.
    let other = Agency::create(&app, "旁观局", Level::Provincial).await;
    let theirs: Value = other
        .get("/api/v1/webhooks/deliveries")
        .await
        .json()
        .await
        .unwrap();
    assert!(theirs["deliveries"].as_array().unwrap().is_empty());
    assert_problem(
        other
            .post(
                &format!("/api/v1/webhooks/deliveries/{id}/replay"),
                json!({}),
            )
            .await,
        404,
    )
    .await;
}

async fn two_nodes_deliver_each_event_once(backend: Backend) {
    let env = loopback_env(backend).await;
    let node_a = env.start().await.unwrap();
    let node_b = env.start().await.unwrap();
    let (rx, url) = Receiver::start().await;
    let agency = subscribed(&node_a, "双节点局", &url).await;
    let c = Citizen::register(&node_a, &national_id(960), "双节点公民").await;
    let doc = c.licence("双节点公司", None).await;
    let mut grants = Vec::new();
    for i in 0..12 {
        grants.push(
            c.grant_to(
                &agency.id,
                json!({ "document_ids": [doc], "tier": "verify", "purpose": format!("第{i}次") }),
            )
            .await,
        );
    }
    for g in &grants {
        c.post(&format!("/me/grants/{g}/revoke"), json!({})).await;
    }
    rx.until("every revocation", |r| {
        r.delivered("grant.revoked").len() >= grants.len()
    })
    .await;
    // Both nodes were running their senders all along; give them time to double up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut seen = HashMap::new();
    for r in rx.all() {
        *seen.entry(r.id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), grants.len());
    assert!(seen.values().all(|n| *n == 1), "each event once: {seen:?}");
    node_b.stop().await;
}

async fn private_and_plain_addresses_are_refused(backend: Backend) {
    // The default settings: https:// to public addresses only.
    let env = TestEnv::new(backend).await;
    let app = env.start().await.unwrap();
    let agency = Agency::create(&app, "地址局", Level::Provincial).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.7/hook",
        "https://172.16.5.4/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://[::1]/hook",
        "https://[fd00::1]/hook",
        "https://[fe80::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "ftp://203.0.113.9/hook",
        "https://user:pw@8.8.8.8/hook",
        "not a url",
    ] {
        let refused = assert_problem(
            agency.post("/api/v1/webhooks", json!({ "url": url })).await,
            422,
        )
        .await;
        assert!(
            refused["detail"].as_str().unwrap().starts_with("url:"),
            "{url}: {refused}"
        );
    }
    let none: Value = agency.get("/api/v1/webhooks").await.json().await.unwrap();
    assert!(
        none["webhooks"].as_array().unwrap().is_empty(),
        "nothing kept"
    );
    assert_eq!(recorded(&app, "webhook.add").await, 0);
    // Without a key: the Bearer challenge.
    let anonymous = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .json(&json!({ "url": "https://8.8.8.8/hook" }))
        .send()
        .await
        .unwrap();
    assert_problem(anonymous, 401).await;
    // Documentation ranges are not public either.
    let added = agency
        .post(
            "/api/v1/webhooks",
            json!({ "url": "https://203.0.113.1/hook" }),
        )
        .await;
    assert_problem(added, 422).await;
    // A public address is accepted (registration connects to nothing; it is removed
    // before any event could be sent).
    let public = agency
        .post(
            "/api/v1/webhooks",
            json!({ "url": "https://8.8.8.8/custodia" }),
        )
        .await;
    assert_eq!(public.status(), 201);
    let id = public.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(recorded(&app, "webhook.add").await, 1);
    assert_eq!(
        agency
            .delete(&format!("/api/v1/webhooks/{id}"))
            .await
            .status(),
        204
    );
    assert_problem(agency.delete(&format!("/api/v1/webhooks/{id}")).await, 404).await;
}

async fn acknowledgements_are_recorded_and_overdue_ones_shown(backend: Backend) {
    let env = loopback_env(backend).await;
    let app = env.start().await.unwrap();
    let (_rx, url) = Receiver::start().await;
    let agency = subscribed(&app, "确认局", &url).await;
    let mut c = Citizen::register(&app, &national_id(970), "确认公民").await;
    let doc = c.licence("确认公司", None).await;
    let g = c
        .grant_to(
            &agency.id,
            json!({ "document_ids": [doc], "tier": "verify", "purpose": "核验", "retention_days": 1 }),
        )
        .await;
    let ack = format!("/api/v1/grants/{g}/revocation-ack");
    let deletion = format!("/api/v1/grants/{g}/retention-ack");
    let statement = json!({
        "deleted_at": custodia::clock::rfc3339(app.clock.now_ms()),
        "statement": "Deleted the case file copy and its backups.",
    });
    // Not while the grant is active.
    assert_problem(agency.post(&ack, json!({})).await, 409).await;
    assert_problem(agency.post(&deletion, statement.clone()).await, 409).await;
    assert_eq!(
        c.post(&format!("/me/grants/{g}/revoke"), json!({}))
            .await
            .status(),
        200
    );
    // Another agency's grant is not there at all.
    let other = Agency::create(&app, "他局", Level::Provincial).await;
    assert_problem(other.post(&ack, json!({})).await, 404).await;
    let acked = agency.post(&ack, json!({})).await;
    assert_eq!(acked.status(), 200);
    let acked: Value = acked.json().await.unwrap();
    assert!(acked["revocation_acknowledged_at"].is_string());
    assert!(acked["deleted_at"].is_null());
    assert_eq!(
        agency.post(&ack, json!({})).await.status(),
        200,
        "again: unchanged"
    );
    assert_eq!(recorded(&app, "grant.revocation-ack").await, 1);

    // Two days on, the retention has run out unconfirmed: the citizen and auditors see it.
    app.clock.advance(time::Duration::days(2));
    c.login().await;
    let shown: Value = c.get("/me/grants").await.json().await.unwrap();
    let mine = &shown["grants"][0];
    assert_eq!(mine["deletion_overdue"], true);
    assert!(mine["deleted_at"].is_null());
    let page = c.get("/grants").await.text().await.unwrap();
    assert!(page.contains("deletion overdue"), "the grants page says so");
    let link = custodia::auditors::invite(&app.state, "确认审计")
        .await
        .unwrap();
    let auditor = enrol_at(&app.base, &link).await.ok().unwrap();
    let console = auditor.get("/audit").await.text().await.unwrap();
    assert!(
        console.contains("1 deletion(s) not confirmed"),
        "the console flags it"
    );

    // The agency confirms: bad statements are refused, then it is recorded once.
    let mut future = statement.clone();
    future["deleted_at"] = json!(custodia::clock::rfc3339(app.clock.now_ms() + 86_400_000));
    assert_problem(agency.post(&deletion, future).await, 422).await;
    let mut short = statement.clone();
    short["statement"] = json!("gone");
    assert_problem(agency.post(&deletion, short).await, 422).await;
    let confirmed = agency.post(&deletion, statement.clone()).await;
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    assert!(confirmed["deleted_at"].is_string());
    assert_problem(agency.post(&deletion, statement).await, 409).await;
    assert_eq!(recorded(&app, "grant.retention-ack").await, 1);
    let shown: Value = c.get("/me/grants").await.json().await.unwrap();
    assert_eq!(shown["grants"][0]["deletion_overdue"], false);
    assert!(shown["grants"][0]["deleted_at"].is_string());
    let page = c.get("/grants").await.text().await.unwrap();
    assert!(page.contains("deletion confirmed"));
    let console = auditor.get("/audit").await.text().await.unwrap();
    assert!(!console.contains("deletion(s) not confirmed"), "cleared");
}

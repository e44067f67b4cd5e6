//! `/metrics`: Prometheus text whose counters move with a real flow, and that holds no
//! national ID, name or id in any label.

use custodia::agencies::Level;
use serde_json::json;

use crate::agency_kit::Agency;
use crate::citizen_kit::Citizen;
use crate::helpers::{Backend, TestApp, TestEnv, national_id};

const TOKEN: &str = "a-metrics-token-for-the-scraper";

async fn scrape(app: &TestApp) -> reqwest::Response {
    app.client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_move_with_a_flow_and_hold_no_personal_data() {
    let mut env = TestEnv::new(Backend::Sqlite).await;
    env.vars
        .insert("CUSTODIA_METRICS_TOKEN".into(), TOKEN.into());
    let app = env.start().await.unwrap();
    let before = scrape(&app).await.text().await.unwrap();
    let agency = Agency::create(&app, "指标局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(701), "王指标").await;
    let doc = c.licence("指标公司", None).await;
    let g = c.grant_to(&agency.id, json!({ "document_ids": [doc], "tier": "fields", "fields": ["company_name"], "purpose": "指标" })).await;
    let read = format!("/api/v1/grants/{g}/documents/{doc}");
    assert_eq!(agency.read(&read).await.status(), 200);
    assert_eq!(agency.read(&format!("{read}/file")).await.status(), 403);

    let response = scrape(&app).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let after = response.text().await.unwrap();
    let ok_reads = "custodia_reads_total{tier=\"fields\",outcome=\"ok\"}";
    assert!(
        value(&after, ok_reads) >= value(&before, ok_reads) + 1.0,
        "{after}"
    );
    assert!(value(&after, "custodia_refusals_total{reason=\"tier-too-low\"}") >= 1.0);
    assert!(after.contains("route=\"/api/v1/grants/{id}/documents/{doc_id}\""));
    assert!(after.contains("custodia_http_request_duration_seconds"));
    assert!(after.contains("custodia_audit_append_seconds"));
    assert!(after.contains("custodia_audit_batch_size"));
    assert!(value(&after, "custodia_live_grants") >= 1.0);
    // The steady read's record went to the database in one hand-off (SQLite: one statement
    // through the sequencer connection's view), not the step-by-step way.
    let at_once = "custodia_audit_batches_total{path=\"at_once\"}";
    let before_reads = value(&after, at_once);
    for _ in 0..5 {
        assert_eq!(agency.read(&read).await.status(), 200);
    }
    let later = scrape(&app).await.text().await.unwrap();
    assert!(value(&later, at_once) > before_reads, "{later}");
    assert!(after.contains("custodia_pending_requests"));

    // No personal data, and no ids, in any label.
    for secret in [
        c.national_id.as_str(),
        "王指标",
        "指标公司",
        doc.as_str(),
        g.as_str(),
        agency.id.as_str(),
    ] {
        assert!(!after.contains(secret), "{secret} leaked into /metrics");
    }
}

/// `/metrics` is no open door: not served without a token, 401 without the right one, and
/// with a separate metrics address served there only.
#[tokio::test]
async fn metrics_are_served_only_behind_a_token_or_on_their_own_address() {
    let env = TestEnv::new(Backend::Sqlite).await;
    let app = env.start().await.unwrap();
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "no token set: not served"
    );
    app.stop().await;

    let mut env = TestEnv::new(Backend::Sqlite).await;
    env.vars
        .insert("CUSTODIA_METRICS_TOKEN".into(), TOKEN.into());
    let app = env.start().await.unwrap();
    let anonymous = app.get("/metrics").await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("a-metrics-token-for-the-scrapeR")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(scrape(&app).await.status(), 200);
    app.stop().await;

    let mut env = TestEnv::new(Backend::Sqlite).await;
    env.vars
        .insert("CUSTODIA_METRICS_LISTEN".into(), "127.0.0.1:0".into());
    let app = env.start().await.unwrap();
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "not on the public address"
    );
    let own = app.metrics_base.clone().unwrap();
    let r = reqwest::get(format!("{own}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("custodia_"));
    assert_eq!(
        reqwest::get(format!("{own}/me")).await.unwrap().status(),
        404,
        "the metrics address serves nothing else"
    );
    app.stop().await;
}

//! `/metrics`: Prometheus text whose counters move with a real flow, and that holds no
//! national ID, name or id in any label.

use custodia::agencies::Level;
use serde_json::json;

use crate::agency_kit::Agency;
use crate::citizen_kit::Citizen;
use crate::helpers::{Backend, national_id, spawn_app};

fn value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_move_with_a_flow_and_hold_no_personal_data() {
    let (_env, app) = spawn_app(Backend::Sqlite).await;
    let before = app.get("/metrics").await.text().await.unwrap();
    let agency = Agency::create(&app, "指标局", Level::Provincial).await;
    let c = Citizen::register(&app, &national_id(701), "王指标").await;
    let doc = c.licence("指标公司", None).await;
    let g = c.grant_to(&agency.id, json!({ "document_ids": [doc], "tier": "fields", "fields": ["company_name"], "purpose": "指标" })).await;
    let read = format!("/api/v1/grants/{g}/documents/{doc}");
    assert_eq!(agency.read(&read).await.status(), 200);
    assert_eq!(agency.read(&format!("{read}/file")).await.status(), 403);

    let response = app.get("/metrics").await;
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

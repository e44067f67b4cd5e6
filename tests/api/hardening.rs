//! Hardening (issue 18): what an attacker sends cannot turn into formulas in an auditor's
//! spreadsheet or into junk in every event of a request.

use custodia::agencies::Level;

use crate::agency_kit::Agency;
use crate::helpers::{Backend, both_backends, spawn_app};

both_backends!(a_hostile_officer_id_opens_as_text_and_a_junk_request_id_is_replaced,);

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

    let mut csv = Vec::new();
    custodia::audit::export(
        &app.state.store,
        None,
        None,
        custodia::audit::Format::Csv,
        &mut csv,
    )
    .await
    .unwrap();
    let csv = String::from_utf8(csv).unwrap();
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
    let mut jsonl = Vec::new();
    custodia::audit::export(
        &app.state.store,
        None,
        None,
        custodia::audit::Format::Jsonl,
        &mut jsonl,
    )
    .await
    .unwrap();
    assert!(
        String::from_utf8(jsonl)
            .unwrap()
            .contains("\"officer_id\":\"=HYPERLINK(")
    );
    app.stop().await;
}

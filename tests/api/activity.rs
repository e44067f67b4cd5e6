//! The citizen's trail: every read of their documents with agency, officer, case, tier and
//! purpose; refusals; a chart; a notice on the home page; nobody else's events.

use custodia::agencies::Level;
use serde_json::{Value, json};

use crate::agency_kit::Agency;
use crate::citizen_kit::Citizen;
use crate::helpers::{Backend, both_backends, national_id, spawn_app};

both_backends!(citizens_see_who_read_what_and_only_their_own);

async fn citizens_see_who_read_what_and_only_their_own(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = Agency::create(&app, "朝阳区市场监管局", Level::Municipal).await;
    let c = Citizen::register(&app, &national_id(401), "Watched").await;
    let other = Citizen::register(&app, &national_id(402), "Other").await;
    let doc = c.licence("被读公司", None).await;
    let g = c.grant_to(&agency.id, json!({ "document_ids": [doc], "tier": "fields", "fields": ["company_name"], "purpose": "登记核验" })).await;
    let home = c.get("/").await.text().await.unwrap();
    assert!(!home.contains("href=\"/activity\">") || !home.contains("class=\"notice\""));

    for _ in 0..3 {
        assert_eq!(
            agency
                .read(&format!("/api/v1/grants/{g}/documents/{doc}"))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        agency
            .read(&format!(
                "/api/v1/grants/{g}/documents/{doc}?fields=business_scope"
            ))
            .await
            .status(),
        403
    );

    // The JSON trail: reads with agency, officer, case, tier, fields, purpose; the refusal.
    let trail: Value = c
        .get("/me/activity?action=reads")
        .await
        .json()
        .await
        .unwrap();
    let events = trail["events"].as_array().unwrap();
    assert_eq!(events.len(), 4, "{trail:#}");
    let ok = events.iter().find(|e| e["outcome"] == "ok").unwrap();
    assert_eq!(ok["agency"]["name"], "朝阳区市场监管局");
    assert_eq!(ok["agency"]["level"], "municipal");
    assert_eq!(ok["officer_id"], "officer-7");
    assert_eq!(ok["case_id"], "CASE-2026-001");
    assert_eq!(ok["tier"], "fields");
    assert_eq!(ok["fields"], json!(["company_name"]));
    assert_eq!(ok["purpose"], "登记核验");
    assert_eq!(ok["grant_id"], g.as_str());
    let refused: Value = c
        .get("/me/activity?outcome=refused")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused["events"].as_array().unwrap().len(), 1);
    assert!(
        refused["events"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("business_scope")
    );
    // Paging.
    let first: Value = c.get("/me/activity?limit=2").await.json().await.unwrap();
    let cursor = first["next_cursor"].as_i64().unwrap();
    let second: Value = c
        .get(&format!("/me/activity?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(second["events"][0]["seq"].as_i64().unwrap() < cursor);
    assert_eq!(c.get("/me/activity?since=yesterday").await.status(), 422);

    // The other citizen sees none of it.
    let theirs: Value = other.get("/me/activity").await.json().await.unwrap();
    let theirs = theirs["events"].as_array().unwrap();
    assert!(
        theirs.iter().all(|e| e["action"] != "document.read"),
        "{theirs:#?}"
    );
    assert!(!theirs.iter().any(|e| e["grant_id"] == g.as_str()));

    // The home page says something was read, until the trail has been seen.
    let home = c.get("/").await.text().await.unwrap();
    assert!(home.contains("class=\"notice\""), "notice shown");
    assert!(home.contains(" 3 "), "with the count");
    let page = c.get("/activity").await.text().await.unwrap();
    assert!(
        page.contains("朝阳区市场监管局")
            && page.contains("officer-7")
            && page.contains("CASE-2026-001")
    );
    assert!(page.contains("<img class=\"chart\" src=\"/activity/chart.svg\""));
    let home = c.get("/").await.text().await.unwrap();
    assert!(!home.contains("class=\"notice\""), "seen now");

    // The chart is an image of reads per day by agency.
    let chart = c.get("/activity/chart.svg").await;
    assert_eq!(
        chart.headers()["content-type"],
        "image/svg+xml; charset=utf-8"
    );
    let svg = chart.text().await.unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<rect") && svg.contains("朝阳区市场监管局"));
    let zh = c.get("/activity?lang=zh-CN").await.text().await.unwrap();
    assert!(zh.contains("谁读取了什么"));
}

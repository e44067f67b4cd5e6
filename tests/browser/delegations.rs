//! Acting for someone else, in two browsers: the principal appoints a delegate over her
//! business licences, the delegate accepts, switches to acting for her (a banner on every
//! page), answers an agency's request, switches back; the principal sees what she did and
//! ends it.

use custodia::client::{AccessRequest, AgencyClient};

use crate::browser::Browser;
use crate::journeys::{CASE, OFFICER, national_id, register, upload_licence};
use crate::server::{Custodia, Engine};

pub async fn appoint_accept_switch_approve_end(lang: &'static str, engine: Engine, seq: u32) {
    let server = Custodia::start(engine).await;
    let api_key = server.create_agency("北京市税务局", "provincial");
    let agency = AgencyClient::new(&server.origin, &api_key)
        .expect("agency client")
        .acting_as(OFFICER, CASE);
    let principal_nid = national_id(seq);
    let delegate_nid = national_id(seq + 1);
    let company = format!("委托代办公司 {lang}");

    let p = Browser::launch(&server.origin, lang).await;
    p.add_authenticator().await;
    register(&p, &server, &principal_nid, "王芳", false).await;
    upload_licence(&p, &company).await;

    let d = Browser::launch(&server.origin, lang).await;
    d.add_authenticator().await;
    register(&d, &server, &delegate_nid, "李娜", false).await;

    // The principal appoints: licences only; see them and answer requests; 30 days.
    p.goto("/delegations").await;
    p.check_page("delegations-empty").await;
    p.fill("delegate_national_id", &delegate_nid).await;
    p.click("#delegation-form input[name=document_types][value=business_license]")
        .await;
    for action in ["view", "answer_requests"] {
        p.click(&format!(
            "#delegation-form input[name=actions][value={action}]"
        ))
        .await;
    }
    p.fill("delegation_days", "30").await;
    p.click("#delegation-form button[type=submit]").await;
    p.wait_for(".grant.status-pending").await;

    // The delegate accepts, then acts for her: a banner says so on every page.
    d.goto("/delegations").await;
    d.wait_for(".accept-delegation").await;
    let seen = d.body_text().await;
    assert!(
        seen.contains("王芳"),
        "the delegate sees who appointed her: {seen}"
    );
    d.click(".accept-delegation").await;
    d.wait_for(".act-for").await;
    d.check_page("delegations-delegate").await;
    d.click(".act-for").await;
    d.wait_path("/documents").await;
    d.wait_for("#acting-banner").await;
    assert!(d.text("#acting-banner").await.contains("王芳"));
    assert!(
        d.body_text().await.contains(&company) || !d.find_all("ul.documents li").await.is_empty(),
        "her licence is listed"
    );
    d.check_page("documents-acting").await;

    // An agency asks the principal; the delegate answers for her.
    let asked = agency
        .request_access(&AccessRequest {
            national_id: principal_nid.clone(),
            document_types: vec!["business_license".into()],
            tier: "fields".into(),
            fields: vec!["company_name".into()],
            purpose_code: "tax_filing".into(),
            purpose: "年度汇算清缴：核对企业名称".into(),
            legal_basis: None,
            duration_days: 30,
            retention_days: 90,
        })
        .await
        .expect("the access request is accepted");
    d.goto("/requests").await;
    d.wait_for(".approve-form").await;
    assert!(d.text(".preview-item").await.contains(&company));
    d.wait_for("#acting-banner").await;
    d.check_page("requests-acting").await;
    d.click(&format!(
        ".approve-form[data-id='{}'] button[type=submit]",
        asked.id
    ))
    .await;
    d.wait_path("/grants").await;
    let status = agency.request_status(asked.id).await.expect("status");
    assert_eq!(status.status, "approved");
    let grant = status.grant_id.expect("a grant answers it");
    let covered = agency.documents(grant).await.expect("covered documents");
    let read = agency
        .read(grant, covered[0].id, None)
        .await
        .expect("the agency reads under the delegate's approval");
    assert_eq!(read["fields"]["company_name"], company.as_str());

    // Back to her own account: no banner, her own (empty) vault.
    d.click("#act-as-myself").await;
    d.wait_path("/delegations").await;
    d.goto("/documents").await;
    assert!(d.find_all("#acting-banner").await.is_empty());
    assert!(!d.body_text().await.contains(&company));

    // The principal sees what her delegate did, and ends it.
    p.goto("/delegations").await;
    p.wait_for(".grant.status-active").await;
    assert_eq!(
        p.find_all("ul.acts li").await.len(),
        3,
        "she accepted, approved the request and so gave the grant"
    );
    p.check_page("delegations-principal").await;
    // Her trail tells those acts as her delegate's.
    p.goto("/activity").await;
    let by_delegate = p.find_all(".event .badge").await.len();
    assert!(
        by_delegate >= 3,
        "the trail marks the delegate's acts ({by_delegate})"
    );
    p.goto("/delegations").await;
    p.click(".end-delegation").await;
    p.wait_for(".grant.status-ended").await;

    // Acting for her is over at once: the switch no longer takes.
    d.goto("/delegations").await;
    assert!(d.find_all(".act-for").await.is_empty());
    server.assert_no_panic();
    p.close().await;
    d.close().await;
}

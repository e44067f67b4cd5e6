//! Registration and approval with the keyboard alone: Tab to move, typing to fill, Enter
//! and Space to act. Every stop shows a focus outline.

use custodia::client::{AccessRequest, AgencyClient};

use crate::browser::{Browser, ENTER};
use crate::journeys::{CASE, OFFICER, PASSPHRASE, assert_ends_in_days, national_id};
use crate::server::{Custodia, Engine};

pub async fn registration_and_approval(lang: &'static str, engine: Engine, seq: u32) {
    let server = Custodia::start(engine).await;
    let api_key = server.create_agency("海淀区市场监管局", "county");
    let agency = AgencyClient::new(&server.origin, &api_key)
        .expect("agency client")
        .acting_as(OFFICER, CASE);
    let nid = national_id(seq);
    let b = Browser::launch(&server.origin, lang).await;
    b.add_authenticator().await;

    // From the top of the home page: the skip link comes first, then the way to register.
    b.goto("/").await;
    b.tab_to("a.skip").await;
    b.tab_to("main a[href='/register']").await;
    b.press(ENTER).await;
    b.wait_path("/register").await;
    b.tab_to("#national_id").await;
    b.type_text(&nid).await;
    b.tab_to("#enrolment_code").await;
    b.type_text(&server.enrol_citizen(&nid)).await;
    b.tab_to("#display_name").await;
    b.type_text("Li Na").await;
    b.tab_to("#passphrase").await;
    b.type_text(PASSPHRASE).await;
    b.tab_to("#register-form button[type=submit]").await;
    b.press(ENTER).await;
    b.wait_for("#recovery").await;
    assert!(!b.text("#recovery-code").await.is_empty());
    b.tab_to("#recovery a.button").await;
    b.press(ENTER).await;
    b.wait_path("/").await;

    // A request for two fields arrives; approve one of them for 7 days.
    let asked = agency
        .request_access(&AccessRequest {
            national_id: nid.clone(),
            document_types: vec!["business_license".into()],
            tier: "fields".into(),
            fields: vec!["company_name".into(), "business_scope".into()],
            purpose_code: "business_registration".into(),
            purpose: "Registration check".into(),
            legal_basis: None,
            duration_days: 30,
            retention_days: 30,
        })
        .await
        .expect("the access request is accepted");
    let id = asked.id;
    b.tab_to("nav a[href='/requests']").await;
    b.press(ENTER).await;
    b.wait_path("/requests").await;
    b.tab_to(&format!("#tier-{id}")).await;
    // Untick business_scope with Space.
    b.tab_to(&format!("#fields-{id} input[value='business_scope']"))
        .await;
    b.press(' ').await;
    b.tab_to(&format!("#days-{id}")).await;
    b.select_all().await;
    b.type_text("7").await;
    b.tab_to(&format!(
        ".approve-form[data-id='{id}'] button[type=submit]"
    ))
    .await;
    b.press(ENTER).await;
    b.wait_path("/grants").await;

    let status = agency.request_status(id).await.expect("request status");
    let grant = agency
        .grant(status.grant_id.expect("approved"))
        .await
        .expect("the grant");
    assert_eq!(grant.fields, vec!["company_name"]);
    assert_eq!(grant.tier, "fields");
    assert_ends_in_days(&grant, 7);
    b.close().await;
}

//! Break-glass in the browser: the citizen chooses on `/settings` what may be read in an
//! emergency; an emergency agency reads it; her home page tells her; an auditor judges
//! the use in the console's review queue, and the agency's record counts it.

use custodia::client::{AgencyClient, EmergencyAccess};

use crate::browser::Browser;
use crate::journeys::{CASE, OFFICER, national_id, register, upload_licence};
use crate::server::{Custodia, Engine};

pub async fn chosen_in_settings_read_disclosed_and_judged(
    lang: &'static str,
    engine: Engine,
    seq: u32,
) {
    let server = Custodia::start(engine).await;
    let out = server.run(&[
        "agency",
        "create",
        "--name",
        "省急救指挥中心",
        "--level",
        "provincial",
        "--emergency",
    ]);
    let api_key = out
        .lines()
        .find_map(|l| l.strip_prefix("api key:"))
        .expect("the API key is printed")
        .trim()
        .to_owned();
    let agency = AgencyClient::new(&server.origin, &api_key)
        .expect("agency client")
        .acting_as(OFFICER, CASE);
    let nid = national_id(seq);
    let company = format!("急救公司 {lang}");

    let c = Browser::launch(&server.origin, lang).await;
    c.add_authenticator().await;
    register(&c, &server, &nid, "赵敏", false).await;
    upload_licence(&c, &company).await;

    // Nothing is emergency-available until she says so: the agency is told "nobody".
    let ask = EmergencyAccess {
        national_id: nid.clone(),
        document_types: vec!["business_license".into()],
        tier: "fields".into(),
        fields: vec!["company_name".into()],
        justification: "Owner unconscious after an accident at the premises".into(),
        legal_basis: "Emergency response regulation, art. 8".into(),
        case: CASE.into(),
        duration_minutes: 30,
        disclosure_delay_days: None,
    };
    match agency.emergency_access(&ask).await {
        Err(custodia::client::ClientError::Problem { status: 404, .. }) => {}
        other => panic!("expected 404 before the choice, got {other:?}"),
    }

    // She ticks business licences on /settings; the page shows the choice.
    c.goto("/settings").await;
    c.wait_for("#emergency-form").await;
    c.click("#emergency-form input[name=document_types][value=business_license]")
        .await;
    c.click("#emergency-form button[type=submit]").await;
    c.wait_for("#emergency-chosen").await;
    let mut chosen = String::new();
    for _ in 0..50 {
        chosen = c.text("#emergency-chosen").await;
        if chosen.contains(if lang == "en" {
            "Business licence"
        } else {
            "营业执照"
        }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        chosen.contains(if lang == "en" {
            "Business licence"
        } else {
            "营业执照"
        }),
        "the settings page shows the choice: {chosen}"
    );
    c.check_page("settings-emergency").await;

    // The agency breaks the glass and reads.
    let grant = agency
        .emergency_access(&ask)
        .await
        .expect("an emergency grant");
    assert!(grant.emergency);
    let covered = agency.documents(grant.id).await.expect("covered documents");
    let read = agency
        .read(grant.id, covered[0].id, None)
        .await
        .expect("the emergency read");
    assert_eq!(read["fields"]["company_name"], company.as_str());

    // Her home page tells her at once.
    c.goto("/").await;
    c.wait_for(".notice.emergency").await;
    assert!(c.text(".notice.emergency").await.contains("省急救指挥中心"));
    c.check_page("home-emergency").await;

    // An auditor judges it in the console's queue.
    let link = server.invite_auditor("复核员 周");
    let a = Browser::launch(&server.origin, lang).await;
    a.add_authenticator().await;
    a.goto(
        link.strip_prefix(&server.origin)
            .expect("the link points at this server"),
    )
    .await;
    a.click("#audit-enrol-form button[type=submit]").await;
    a.wait_path("/audit").await;
    a.wait_for(".emergency-review-form").await;
    assert!(a.text("#emergencies").await.contains("省急救指挥中心"));
    a.check_page("audit-emergency-queue").await;
    a.click(".emergency-review-form input[value=unjustified]")
        .await;
    let note_id = format!("note-{}", grant.id);
    a.fill(&note_id, "The owner was conscious and reachable by phone.")
        .await;
    a.click(".emergency-review-form button[type=submit]").await;
    let mut judged = String::new();
    for _ in 0..100 {
        // The page reloads itself once the verdict is recorded.
        if a.find_all(".emergency-review-form").await.is_empty()
            && !a
                .find_all(".emergency-agencies td.unjustified")
                .await
                .is_empty()
        {
            judged = a.text(".emergency-agencies td.unjustified").await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        judged.trim(),
        "1",
        "the agency's unjustified use is counted"
    );
    server.assert_no_panic();
    c.close().await;
    a.close().await;
}

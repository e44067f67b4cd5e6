//! The citizen's and the auditor's journeys, as a person takes them in Chromium: every main
//! page is checked with axe-core and photographed at phone and desktop widths on the way.

use custodia::client::{AccessRequest, AgencyClient, ClientError};
use serde_json::Value;

use crate::browser::Browser;
use crate::server::{Custodia, Engine};

pub const PASSPHRASE: &str = "correct horse battery staple 42";
pub const OFFICER: &str = "officer-0815";
pub const CASE: &str = "JSJ-2026-0815";

/// A valid national ID number, distinct for each `seq` (and from the API suite's).
pub fn national_id(seq: u32) -> String {
    crate::ids::national_id("19850101", seq)
}

/// The grant ends `days` from now (to the hour: the test takes a moment).
pub fn assert_ends_in_days(grant: &custodia::client::Grant, days: i64) {
    let expires = time::OffsetDateTime::parse(
        &grant.expires_at,
        &time::format_description::well_known::Rfc3339,
    )
    .expect("expiry time");
    let hours = (expires - time::OffsetDateTime::now_utc()).whole_hours();
    assert!(
        (days * 24 - 2..=days * 24).contains(&hours),
        "{days} days, not {hours} hours"
    );
}

/// Registers through `/register` with the browser's authenticator and the enrolment code
/// the operator issued (`custodia citizen enrol`); returns the recovery code the page
/// shows once.
pub async fn register(
    b: &Browser,
    server: &Custodia,
    national_id: &str,
    name: &str,
    check: bool,
) -> String {
    let code = server.enrol_citizen(national_id);
    b.goto("/register").await;
    if check {
        b.check_page("register").await;
    }
    b.fill("national_id", national_id).await;
    b.fill("enrolment_code", &code).await;
    b.fill("display_name", name).await;
    b.fill("passphrase", PASSPHRASE).await;
    b.click("#register-form button[type=submit]").await;
    b.wait_for("#recovery").await;
    let code = b.text("#recovery-code").await;
    assert!(
        code.len() >= 26
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' '),
        "a recovery code is shown: {code:?}"
    );
    assert!(
        !b.find("#register-form")
            .await
            .is_displayed()
            .await
            .unwrap_or(true),
        "the form is gone once the account exists"
    );
    code
}

/// What the agency in these journeys asks for: everything in a business licence.
fn full_licence_request(national_id: &str) -> AccessRequest {
    AccessRequest {
        national_id: national_id.to_owned(),
        document_types: vec!["business_license".into()],
        tier: "full".into(),
        fields: Vec::new(),
        purpose_code: "tax_filing".into(),
        purpose: "年度汇算清缴：核对营业执照信息".into(),
        legal_basis: None,
        duration_days: 30,
        retention_days: 90,
    }
}

fn refused_with(result: Result<Value, ClientError>, status: u16) {
    match result {
        Err(ClientError::Problem { status: s, .. }) if s == status => {}
        other => panic!("expected a {status} refusal, got {other:?}"),
    }
}

/// Uploads a business licence with a picture of it; checks the progress bar and the
/// preview; returns the document page's path.
/// Fills the business licence form's fields (the page must be open).
pub async fn fill_licence_fields(b: &Browser, company: &str) {
    b.fill("f-company_name", company).await;
    b.fill("f-unified_social_credit_code", "91110105MA01ABCD2X")
        .await;
    b.fill("f-legal_representative", "张伟").await;
    b.fill("f-company_type", "有限责任公司").await;
    b.fill("f-business_scope", "技术开发、技术咨询").await;
    b.fill("f-registered_address", "北京市朝阳区建国路1号")
        .await;
    // A date input's typing order follows the browser's locale; set it as a date picker would.
    b.js("const d = document.getElementById('f-established_on'); d.value = '2019-03-15'; d.dispatchEvent(new Event('change')); return ''")
        .await;
}

pub async fn upload_licence(b: &Browser, company: &str) -> String {
    b.goto("/documents").await;
    b.check_page("documents-empty").await;
    b.goto("/documents/new?type=business_license").await;
    b.check_page("upload").await;
    fill_licence_fields(b, company).await;
    // The file: a real PNG, this very page as the browser renders it.
    let png = b.client.screenshot().await.expect("screenshot");
    let file = tempfile::Builder::new()
        .suffix(".png")
        .tempfile()
        .expect("temporary file");
    std::fs::write(file.path(), &png).expect("write the picture");
    b.find("#file")
        .await
        .send_keys(&file.path().display().to_string())
        .await
        .expect("choose the file");
    // Record what the progress bar shows; the page navigates away once the upload is done.
    b.js(r#"const bar = document.getElementById("upload-progress");
        sessionStorage.setItem("progress", "[]");
        new MutationObserver(() => {
          const seen = JSON.parse(sessionStorage.getItem("progress"));
          seen.push({ hidden: bar.hidden, value: bar.value });
          sessionStorage.setItem("progress", JSON.stringify(seen));
        }).observe(bar, { attributes: true });
        return "";"#)
        .await;
    b.click("#document-form button[type=submit]").await;
    for _ in 0..150 {
        if b.path().await.starts_with("/documents/") && b.path().await != "/documents/new" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let path = b.path().await;
    assert!(
        path.starts_with("/documents/") && path != "/documents/new",
        "the upload leads to the document's page, not {path} (error: {:?})",
        b.error_text().await
    );
    let progress = b
        .js_value("return JSON.parse(sessionStorage.getItem('progress'))")
        .await;
    let seen = progress.as_array().cloned().unwrap_or_default();
    assert!(
        seen.iter().any(|p| p["hidden"] == false),
        "the progress bar was shown: {progress}"
    );
    assert!(
        seen.iter().any(|p| p["value"].as_f64() == Some(100.0)),
        "the progress bar reached 100%: {progress}"
    );

    // The document page shows the fields and a preview of the picture itself, decoded.
    b.wait_for("img.preview").await;
    let mut width = 0u32;
    for _ in 0..50 {
        width = b
            .js("const i = document.querySelector('img.preview'); return String(i.complete ? i.naturalWidth : 0)")
            .await
            .parse()
            .unwrap_or(0);
        if width > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(width > 0, "the preview shows the uploaded picture");
    assert!(b.body_text().await.contains(company));
    b.check_page("document").await;
    path
}

/// The whole citizen journey, then the auditor's, in one language on one engine.
pub async fn citizen_and_auditor(lang: &'static str, engine: Engine, seq: u32) {
    let server = Custodia::start(engine).await;
    let api_key = server.create_agency("北京市税务局", "provincial");
    let agency = AgencyClient::new(&server.origin, &api_key)
        .expect("agency client")
        .acting_as(OFFICER, CASE);
    let nid = national_id(seq);
    let company = format!("示例科技有限公司 {lang}");

    let b = Browser::launch(&server.origin, lang).await;
    let authenticator = b.add_authenticator().await;
    b.goto("/").await;
    b.check_page("home-signed-out").await;

    // Register with a passkey; the recovery code is shown once.
    let recovery = register(&b, &server, &nid, "张伟", true).await;
    assert_eq!(
        b.credentials(&authenticator).await.len(),
        1,
        "the passkey lives in the authenticator"
    );
    b.check_page("register-recovery-code").await;
    b.click("#recovery a.button").await;
    b.wait_path("/").await;
    b.check_page("home-unlocked").await;

    // Upload a licence with a file.
    let document_page = upload_licence(&b, &company).await;
    b.goto("/documents").await;
    b.check_page("documents").await;
    assert_eq!(
        b.find_all(&format!("a[href='{document_page}']"))
            .await
            .len(),
        1,
        "the list links to the new document"
    );

    // The agency asks over the API for the whole licence.
    let asked = agency
        .request_access(&full_licence_request(&nid))
        .await
        .expect("the access request is accepted");
    assert_eq!(asked.status, "pending");

    // The citizen reads the preview and approves only two fields, for 7 days.
    b.goto("/requests").await;
    b.wait_for(".approve-form").await;
    let preview = b.text(".preview-item").await;
    assert!(
        preview.contains(&company),
        "the preview shows the licence: {preview}"
    );
    b.check_page("requests").await;
    let id = asked.id;
    b.find(&format!("#tier-{id}"))
        .await
        .select_by_value("fields")
        .await
        .expect("choose the fields tier");
    for checkbox in b
        .find_all(&format!("#fields-{id} input[type=checkbox]"))
        .await
    {
        let name = checkbox
            .attr("value")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let keep = name == "company_name" || name == "business_scope";
        let checked = checkbox.is_selected().await.unwrap_or(false);
        if checked != keep {
            checkbox.click().await.expect("tick or untick a field");
        }
    }
    b.fill(&format!("days-{id}"), "7").await;
    b.click(&format!(
        ".approve-form[data-id='{id}'] button[type=submit]"
    ))
    .await;
    b.wait_path("/grants").await;
    b.wait_for(".grant.status-active").await;
    b.check_page("grants").await;

    // The agency sees exactly that grant and reads the two fields, as officer and case.
    let status = agency.request_status(id).await.expect("request status");
    assert_eq!(status.status, "approved");
    let grant_id = status.grant_id.expect("a grant answers the request");
    let grant = agency.grant(grant_id).await.expect("the grant");
    assert_eq!(grant.tier, "fields");
    assert_eq!(grant.fields, vec!["business_scope", "company_name"]);
    assert_ends_in_days(&grant, 7);
    let covered = agency.documents(grant_id).await.expect("covered documents");
    assert_eq!(covered.len(), 1);
    let doc = covered[0].id;
    assert!(document_page.ends_with(&doc.to_string()));
    let read = agency
        .read(grant_id, doc, None)
        .await
        .expect("a fields read");
    let fields = read["fields"].as_object().expect("fields");
    assert_eq!(fields.len(), 2, "only the two shared fields: {read}");
    assert_eq!(fields["company_name"], company.as_str());
    refused_with(
        agency.read_file(grant_id, doc).await.map(|_| Value::Null),
        403,
    );

    // The read is in the citizen's trail with officer and case. (The operator signs a
    // checkpoint now; servers sign on their own within a minute.)
    server.run(&["audit", "checkpoint"]);
    b.goto("/activity").await;
    assert_eq!(
        b.find_all("nav a[aria-current='page']").await.len(),
        1,
        "the navigation marks the page the citizen is on"
    );
    assert_eq!(
        b.find("nav a[aria-current='page']")
            .await
            .attr("href")
            .await
            .ok()
            .flatten()
            .as_deref(),
        Some("/activity")
    );
    let trail = b.body_text().await;
    assert!(
        trail.contains(OFFICER) && trail.contains(CASE),
        "the trail names the officer and the case: {trail}"
    );
    assert!(trail.contains("北京市税务局"));
    let purpose = if lang == "en" {
        "Tax filing"
    } else {
        "纳税申报"
    };
    assert!(
        trail.contains(purpose) && !trail.contains("tax_filing"),
        "the approval shows the purpose by its name"
    );
    b.check_page("activity").await;
    proofs_verify_in_the_browser(&b).await;

    // Revoke; the agency is refused from then on.
    b.goto("/grants").await;
    b.click(".revoke-grant").await;
    b.client
        .accept_alert()
        .await
        .expect("confirm the revocation");
    b.wait_for(".grant.status-revoked").await;
    refused_with(agency.read(grant_id, doc, None).await, 403);

    // A consent given directly, without a request: one field of the licence for 3 days.
    b.find("#agency_id")
        .await
        .select_by_index(0)
        .await
        .expect("choose the agency");
    b.click("input[name=document_types][value=business_license]")
        .await;
    b.find("#tier")
        .await
        .select_by_value("fields")
        .await
        .expect("choose the fields tier");
    // Open the licence's group of fields, as a person would, by its summary.
    for group in b.find_all("#grant-form details").await {
        if group
            .find(fantoccini::Locator::Css(
                "input[value=unified_social_credit_code]",
            ))
            .await
            .is_ok()
        {
            group
                .find(fantoccini::Locator::Css("summary"))
                .await
                .expect("a summary")
                .click()
                .await
                .expect("open the group");
        }
    }
    let licence_fields = b
        .find_all("#grant-form details[open] input[name=fields][value=unified_social_credit_code]")
        .await;
    assert_eq!(licence_fields.len(), 1);
    licence_fields[0].click().await.expect("tick the field");
    b.fill("purpose", "核对统一社会信用代码").await;
    b.fill("duration_days", "3").await;
    b.click("#grant-form button[type=submit]").await;
    b.wait_for(".grant.status-active").await;
    let given = agency
        .grants()
        .await
        .expect("the agency's grants")
        .into_iter()
        .find(|g| g.status == "active")
        .expect("the consent given on the page");
    assert_eq!(given.fields, vec!["unified_social_credit_code"]);
    assert_ends_in_days(&given, 3);

    // Both languages are a click apart, and the choice sticks.
    let other = if lang == "en" { "zh-CN" } else { "en" };
    b.click(&format!("a[hreflang='{other}']")).await;
    let switched = b.js("return document.documentElement.lang").await;
    assert_eq!(switched, other);
    b.click(&format!("a[hreflang='{lang}']")).await;
    b.assert_lang().await;

    // Sign out, sign in with the passkey, unlock with the passphrase.
    b.click("#logout").await;
    b.wait_path("/").await;
    b.wait_for("a[href='/login']").await;
    b.goto("/login").await;
    b.check_page("login").await;
    b.fill("national_id", &nid).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_path("/unlock").await;
    b.check_page("unlock").await;
    b.fill("passphrase", PASSPHRASE).await;
    b.click("#unlock-form button[type=submit]").await;
    b.wait_path("/").await;
    b.wait_for("#lock").await;
    b.goto("/settings").await;
    b.check_page("settings").await;

    // Recover with the recovery code: a new passphrase and a new code.
    let new_passphrase = "a brand new passphrase for 2027";
    b.fill("recovery_code", &recovery).await;
    b.fill("recover_new_passphrase", new_passphrase).await;
    b.click("#recover-form button[type=submit]").await;
    b.wait_for("#recovery").await;
    let next = b.text("#recovery-code").await;
    assert!(
        !next.is_empty() && next != recovery,
        "a fresh recovery code is shown"
    );
    b.goto("/").await;
    b.click("#lock").await;
    b.wait_for("a[href='/unlock']").await;
    b.goto("/unlock").await;
    b.fill("passphrase", PASSPHRASE).await;
    b.click("#unlock-form button[type=submit]").await;
    b.wait_for("#error").await;
    b.fill("passphrase", new_passphrase).await;
    b.click("#unlock-form button[type=submit]").await;
    b.wait_path("/").await;
    b.wait_for("#lock").await;
    b.goto(&document_page).await;
    assert!(
        b.body_text().await.contains(&company),
        "the vault opens with the new passphrase"
    );
    b.close().await;

    auditor(&server, lang, &nid).await;
}

/// An auditor enrols from an invitation, searches, reveals with a reason, exports, and
/// sees the chain intact; then signs in again by name.
async fn auditor(server: &Custodia, lang: &'static str, nid: &str) {
    let link = server.invite_auditor("审计员 王芳");
    let b = Browser::launch(&server.origin, lang).await;
    let authenticator = b.add_authenticator().await;
    let path = link
        .strip_prefix(&server.origin)
        .expect("the link points at this server");
    b.goto(path).await;
    b.check_page("audit-enrol").await;
    b.click("#audit-enrol-form button[type=submit]").await;
    b.wait_path("/audit").await;
    assert_eq!(b.credentials(&authenticator).await.len(), 1);
    b.check_page("audit").await;

    // Search by officer: the read is there, under a pseudonym.
    b.fill("q-officer", OFFICER).await;
    b.click("form.filters button[type=submit]").await;
    b.wait_for("table.events tbody tr").await;
    let rows = b.text("table.events tbody").await;
    assert!(
        rows.contains("document.read") && rows.contains(CASE),
        "{rows}"
    );
    assert!(!rows.contains(nid), "the trail holds no national ID");
    let pseudonym = b
        .js("const c = document.querySelector('table.events tbody tr td:nth-child(6) code'); return c ? c.textContent : ''")
        .await;
    assert!(!pseudonym.is_empty(), "rows name the citizen by pseudonym");
    b.check_page("audit-search").await;

    // Confirm the national ID a complaint names, with a case reason: the server answers
    // from blind indexes, and cannot reveal the ID itself.
    b.fill("r-pseudonym", &pseudonym).await;
    b.fill("r-national-id", nid).await;
    b.fill("r-reason", "Complaint review, case JSJ-2026-0815")
        .await;
    b.click("#confirm-form button[type=submit]").await;
    b.wait_for("#confirmed").await;
    assert_eq!(
        b.js("return document.getElementById('confirmed').dataset.matches")
            .await,
        "true"
    );

    // Export: the file arrives and holds the read.
    b.click("a[href='/api/v1/audit/export?format=csv']").await;
    let csv = b.wait_download(".csv").await;
    assert!(csv.contains("document.read") && csv.contains(OFFICER));
    assert!(!csv.contains(nid));

    // Verify the whole chain.
    b.goto("/audit?verify=1").await;
    let status = b.find("#chain-status").await;
    let class = status
        .attr("class")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert!(
        class.contains("verified") && !class.contains("unverified"),
        "{class}"
    );
    b.check_page("audit-verified").await;
    assert!(server.chain_verifies());

    // Sign out and in again with the same passkey.
    b.click("#logout").await;
    b.wait_path("/").await;
    b.goto("/audit/login").await;
    b.check_page("audit-login").await;
    b.fill("auditor-name", "审计员 王芳").await;
    b.click("#audit-login-form button[type=submit]").await;
    b.wait_path("/audit").await;
    b.close().await;
}

/// Waits until the page's script has checked every listed event's proof; returns how many
/// were verified and how many failed.
async fn checked_proofs(b: &Browser) -> (u64, u64) {
    for _ in 0..200 {
        let counts = b
            .js_value(
                "const n = (s) => document.querySelectorAll(`.proof[data-proof='${s}']`).length; \
                 return [n('unchecked') + n('checking'), n('verified'), n('failed')];",
            )
            .await;
        if counts[0] == 0 {
            return (counts[1].as_u64().unwrap(), counts[2].as_u64().unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the page did not finish checking its proofs");
}

/// Every listed event verifies in the browser (WebCrypto: SHA-256 and Ed25519) against the
/// signed checkpoint and the keys the page shows; a tampered proof, and a tampered event,
/// do not.
async fn proofs_verify_in_the_browser(b: &Browser) {
    let (verified, failed) = checked_proofs(b).await;
    assert!(
        verified >= 3 && failed == 0,
        "{verified} verified, {failed} failed"
    );
    let summary = b.find("#proof-summary").await;
    assert!(
        summary
            .attr("class")
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
            == "issuer verified",
        "{}",
        summary.text().await.unwrap_or_default()
    );
    let keys = b
        .js("return document.querySelector('#proof-check details').textContent;")
        .await;
    assert!(
        keys.contains("localhost/audit+"),
        "the pinned key is shown: {keys}"
    );

    // The same check over answers changed on their way: one event's bytes, another's proof.
    b.js(
        "const original = window.fetch; \
         window.fetch = async (url, options) => { \
           const answer = await original(url, options); \
           if (!String(url).endsWith('/me/activity/proofs')) return answer; \
           const bundle = await answer.json(); \
           bundle.events[0].event = bundle.events[0].event.replace('\"seq\"', '\"officer\":\"x\",\"seq\"'); \
           const hash = Uint8Array.from(atob(bundle.events[1].proof[0]), (c) => c.charCodeAt(0)); \
           hash[0] ^= 1; \
           bundle.events[1].proof[0] = btoa(String.fromCharCode(...hash)); \
           return new Response(JSON.stringify(bundle), { status: 200 }); \
         }; \
         document.querySelectorAll('.proof').forEach((p) => { p.dataset.proof = 'unchecked'; }); \
         checkProofs(document.getElementById('proof-check')); \
         return 'started';",
    )
    .await;
    let (verified_now, failed) = checked_proofs(b).await;
    assert_eq!(failed, 2, "the two tampered events fail");
    assert_eq!(verified_now, verified - 2);
}

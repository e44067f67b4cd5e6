//! The web shell: pages in both languages, a strict CSP, no inline script, cookie flags.

use serde_json::json;

use crate::citizen_kit::Citizen;
use crate::helpers::{Backend, TestEnv, both_backends, national_id, spawn_app};

both_backends!(
    pages_render_in_both_languages_under_a_strict_csp,
    session_cookies_carry_the_promised_flags,
);

async fn pages_render_in_both_languages_under_a_strict_csp(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let http = app.new_client();
    for (path, en, zh) in [
        ("/", "Create account", "注册"),
        ("/register", "Create your account", "创建账户"),
        ("/login", "Sign in with a passkey", "使用通行密钥登录"),
    ] {
        let zh_page = http
            .get(app.url(path))
            .header("accept-language", "zh-CN,zh;q=0.9,en;q=0.5")
            .send()
            .await
            .unwrap();
        assert_eq!(zh_page.status(), 200, "{path}");
        assert_eq!(zh_page.headers()["content-language"], "zh-CN");
        let csp = zh_page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-inline"));
        let body = zh_page.text().await.unwrap();
        assert!(body.contains(zh), "{path} in Chinese");
        assert!(body.contains("<html lang=\"zh-CN\">"));
        // The only script is the external one.
        assert_eq!(body.matches("<script").count(), 1);
        assert!(body.contains("<script src=\"/static/app.js\" defer></script>"));
        assert!(!body.contains(" style=\""), "no inline style");

        let en_page = http
            .get(app.url(path))
            .header("accept-language", "en-GB,en;q=0.8")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(en_page.contains(en), "{path} in English");
    }

    // Switching language sticks through a cookie, over Accept-Language.
    let switched = http
        .get(app.url("/login?lang=zh-CN"))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert!(
        switched.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("custodia-lang=zh-CN")
    );
    let again = http
        .get(app.url("/login"))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(again.contains("使用通行密钥登录"));

    // Pages behind sign-in send the signed-out visitor to /login.
    let unlock = app
        .new_client()
        .get(app.url("/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(unlock.url().path(), "/login");

    // Signed in, the page carries the CSRF token for the script and the settings work.
    let c = Citizen::register(&app, &national_id(20), "Ma Lin").await;
    let settings = c
        .http
        .get(format!("{}/settings", c.base))
        .send()
        .await
        .unwrap();
    let html = settings.text().await.unwrap();
    assert!(html.contains(&format!(
        "<meta name=\"csrf-token\" content=\"{}\">",
        c.csrf
    )));
    assert!(html.contains("Passkey 1"));
    let home = c
        .http
        .get(format!("{}/", c.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("Ma Lin"),
        "the unlocked home page greets by name"
    );

    // Static assets are served with their types; the script holds no secrets.
    let js = http.get(app.url("/static/app.js")).send().await.unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let css = http.get(app.url("/static/style.css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    app.stop().await;
}

async fn session_cookies_carry_the_promised_flags(backend: Backend) {
    // Plain-http localhost: no __Host- prefix or Secure (browsers would drop them).
    let (_env, app) = spawn_app(backend).await;
    let mut c = Citizen::register(&app, &national_id(21), "Qian Yu").await;
    let assertion = c.assertion().await;
    let finish = c
        .post("/auth/login/finish", json!({ "credential": assertion }))
        .await;
    let cookies: Vec<String> = finish
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("custodia-session="))
        .unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(!session.contains("Secure"));
    app.stop().await;

    // Over https: the __Host- prefix and Secure.
    let mut env = TestEnv::new(backend).await;
    env.vars.insert(
        "CUSTODIA_PUBLIC_URL".into(),
        "https://vault.example.gov.cn".into(),
    );
    let app = env.start().await.unwrap();
    let start = app
        .new_client()
        .post(app.url("/auth/register/start"))
        .json(&json!({
            "national_id": national_id(22),
            "display_name": "Feng",
            "enrolment_code": crate::citizen_kit::enrolment_code(&app, &national_id(22)).await,
        }))
        .send()
        .await
        .unwrap();
    let cookie = start.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-custodia-ceremony="), "{cookie}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(
        !cookie.contains("Domain"),
        "__Host- cookies carry no Domain"
    );
    app.stop().await;
}

both_backends!(document_pages_render_for_the_owner);

async fn document_pages_render_for_the_owner(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let c = Citizen::register(&app, &national_id(23), "Page Owner").await;
    let stored: serde_json::Value = c
        .upload(
            None,
            "business_license",
            crate::citizen_kit::licence_fields("页面测试公司"),
            Some(("l.pdf", crate::citizen_kit::pdf_bytes(5000, "p"))),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = stored["id"].as_str().unwrap();
    let page = |path: String| {
        let http = c.http.clone();
        let url = format!("{}{path}", c.base);
        async move {
            let r = http
                .get(url)
                .header("accept-language", "zh-CN")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let list = page("/documents".into()).await;
    assert!(list.contains("营业执照") && list.contains(&format!("/documents/{id}")));
    let form = page("/documents/new?type=business_license".into()).await;
    assert!(form.contains("id=\"document-form\"") && form.contains("id=\"upload-progress\""));
    assert!(form.contains("data-field=\"unified_social_credit_code\""));
    let replace = page(format!("/documents/new?type=business_license&replace={id}")).await;
    assert!(replace.contains("value=\"页面测试公司\""));
    let view = page(format!("/documents/{id}")).await;
    assert!(
        view.contains("页面测试公司")
            && view.contains(&format!("/me/documents/{id}/file?version=1"))
    );
    app.stop().await;
}

both_backends!(the_consents_page_lists_grants_and_their_state);

async fn the_consents_page_lists_grants_and_their_state(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let agency = custodia::agencies::create(
        &app.state,
        &custodia::agencies::NewAgency {
            name: "朝阳区市场监管局",
            level: custodia::agencies::Level::County,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await
    .unwrap();
    let c = Citizen::register(&app, &national_id(24), "Consent Page").await;
    let g: serde_json::Value = c
        .post(
            "/me/grants",
            json!({ "agency_id": agency.id, "document_types": ["business_license"], "tier": "verify",
                    "purpose": "企业年报核验", "duration_days": 7 }),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = g["id"].as_str().unwrap();
    let get = || async {
        c.http
            .get(format!("{}/grants", c.base))
            .header("accept-language", "zh-CN")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let html = get().await;
    assert!(
        html.contains("朝阳区市场监管局")
            && html.contains("企业年报核验")
            && html.contains("营业执照")
    );
    assert!(
        html.contains(&format!("data-id=\"{id}\"")),
        "a revoke button"
    );
    assert!(html.contains("有效"));
    c.post(&format!("/me/grants/{id}/revoke"), json!({})).await;
    assert!(
        html.contains("id=\"grant-form\"")
            && html.contains(&format!("<option value=\"{}\">", agency.id))
    );
    assert!(
        !html.contains("value=\"medical_record\""),
        "never-shared types are not offered"
    );
    let title = &html[html.find("<title>").unwrap() + 7..html.find("</title>").unwrap()];
    assert!(!title.contains('<'), "the title holds text only: {title}");
    assert_eq!(html.matches("id=\"grant-form\"").count(), 1);
    let directory: serde_json::Value = c.get("/me/agencies").await.json().await.unwrap();
    assert_eq!(directory["agencies"][0]["name"], "朝阳区市场监管局");
    let html = get().await;
    assert!(html.contains("已撤销") && !html.contains(&format!("data-id=\"{id}\"")));
    app.stop().await;
}

both_backends!(the_requests_page_shows_the_preview_and_the_answer);

async fn the_requests_page_shows_the_preview_and_the_answer(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let created = custodia::agencies::create(
        &app.state,
        &custodia::agencies::NewAgency {
            name: "西城区税务局",
            level: custodia::agencies::Level::Municipal,
            issuer: false,
            issuer_key: None,
            issuer_types: &[],
            enroller: false,
            guardianship_authority: false,
            emergency: false,
        },
    )
    .await
    .unwrap();
    let agency = app.state.store.agency(created.id).await.unwrap();
    let c = Citizen::register(&app, &national_id(25), "Inbox").await;
    c.upload(
        None,
        "business_license",
        crate::citizen_kit::licence_fields("收件箱公司"),
        None,
    )
    .await;
    let (id, _) = custodia::requests::create(
        &app.state,
        &agency,
        &custodia::requests::NewRequest {
            national_id: national_id(25),
            document_types: vec!["business_license".into()],
            tier: custodia::catalog::Tier::Fields,
            fields: vec!["company_name".into()],
            purpose_code: "business_registration".into(),
            purpose: "变更登记".into(),
            legal_basis: None,
            duration_days: 14,
            retention_days: 30,
        },
        Some("officer-3"),
        Some("XC-88"),
    )
    .await
    .unwrap();
    let citizen = &c;
    let fetch = move |path: &'static str| async move {
        citizen
            .http
            .get(format!("{}{path}", citizen.base))
            .header("accept-language", "zh-CN")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let page = move || fetch("/requests");
    // The home page counts what waits for an answer.
    let home = fetch("/").await;
    assert!(
        home.contains("<a href=\"/requests\"><strong>1</strong>")
            && home.contains("<a href=\"/grants\"><strong>0</strong>"),
        "{home}"
    );
    let html = page().await;
    assert!(html.contains("西城区税务局") && html.contains("XC-88") && html.contains("officer-3"));
    assert!(
        html.contains("收件箱公司"),
        "the preview shows the asked field's value"
    );
    assert!(
        !html.contains("91110105MA01ABCD2X"),
        "and nothing that was not asked"
    );
    assert!(html.contains(&format!("data-id=\"{id}\"")));
    let approved = c
        .post(
            &format!("/me/requests/{id}/approve"),
            json!({ "tier": "verify", "duration_days": 3 }),
        )
        .await;
    assert_eq!(approved.status(), 201);
    let html = page().await;
    assert!(html.contains("已批准") && !html.contains("class=\"approve-form\""));
    let home = fetch("/").await;
    assert!(
        home.contains("<a href=\"/requests\"><strong>0</strong>")
            && home.contains("<a href=\"/grants\"><strong>1</strong>"),
        "{home}"
    );
    app.stop().await;
}

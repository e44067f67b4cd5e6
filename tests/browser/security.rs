//! What the browser enforces for Custodia: the CSP stops injected script, the session
//! cookie is out of a script's reach and never sent cross-site, and no page can be framed.

use cookie::SameSite;

use crate::browser::Browser;
use crate::journeys::{national_id, register};
use crate::server::{Custodia, Engine};

pub async fn csp_cookies_and_framing(lang: &'static str, engine: Engine, seq: u32) {
    let server = Custodia::start(engine).await;
    let b = Browser::launch(&server.origin, lang).await;
    b.add_authenticator().await;
    register(&b, &server, &national_id(seq), "王芳", false).await;
    b.goto("/documents").await;

    // The session cookie: HttpOnly, SameSite=Strict, whole site; invisible to script.
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    let session = cookies
        .iter()
        .find(|c| c.name().ends_with("custodia-session"))
        .unwrap_or_else(|| panic!("a session cookie is set: {cookies:?}"));
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    assert_eq!(session.same_site(), Some(SameSite::Strict), "{session:?}");
    assert_eq!(session.path(), Some("/"), "{session:?}");
    // On plain-http localhost the cookie cannot be Secure; over https it is `__Host-` + Secure
    // (tested in the API suite).
    let visible = b.js("return document.cookie").await;
    assert!(!visible.contains("custodia-session"), "{visible}");

    // An injected inline script does not run, and the console says why.
    b.console().await;
    let ran = b
        .js(r#"const s = document.createElement("script");
            s.textContent = "window.__injected = true";
            document.body.appendChild(s);
            const img = document.createElement("img");
            img.setAttribute("onerror", "window.__handler = true");
            img.src = "data:,";
            document.body.appendChild(img);
            return new Promise((done) => setTimeout(() => done(String(Boolean(window.__injected || window.__handler))), 300));"#)
        .await;
    assert_eq!(ran, "false", "injected script ran");
    let console = b.console().await;
    assert!(
        console
            .iter()
            .any(|m| m.contains("Content Security Policy") && m.contains("inline")),
        "the console reports the CSP violation: {console:?}"
    );

    // Another site cannot frame a Custodia page.
    let page = format!(
        "<!doctype html><html lang=en><title>elsewhere</title><iframe src=\"{}/documents\"></iframe></html>",
        server.origin
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the other site");
    let elsewhere = format!("http://{}/", listener.local_addr().expect("address"));
    let site = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    tokio::spawn(async move { axum::serve(listener, site).await.ok() });
    b.client
        .goto(&elsewhere)
        .await
        .expect("open the framing page");
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = b.console().await;
        if refused.iter().any(|m| m.contains("frame-ancestors")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        refused.iter().any(|m| m.contains("frame-ancestors")),
        "the framed page is refused: {refused:?}"
    );
    b.close().await;
}

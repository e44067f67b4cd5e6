//! `/healthz` and `/readyz`: readiness really checks the database and the blob store.

use crate::helpers::{Backend, assert_problem, both_backends, spawn_app};

both_backends!(
    healthz_and_readyz_answer,
    readyz_reports_a_broken_blob_store,
    readyz_reports_an_unreachable_database,
    responses_carry_request_id_and_security_headers
);

async fn healthz_and_readyz_answer(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["blob_store"], "ok");
    app.stop().await;
}

async fn readyz_reports_a_broken_blob_store(backend: Backend) {
    let (env, app) = spawn_app(backend).await;
    std::fs::remove_dir_all(env.data_dir().join("blobs")).unwrap();
    let body = assert_problem(app.get("/readyz").await, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("blob store"));
    // Liveness is about the process, not its dependencies.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

async fn readyz_reports_an_unreachable_database(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    app.state.store.close().await;
    let body = assert_problem(app.get("/readyz").await, 503).await;
    assert!(body["detail"].as_str().unwrap().contains("database"));
    app.stop().await;
}

async fn responses_carry_request_id_and_security_headers(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let a = app.get("/healthz").await;
    let b = app.get("/healthz").await;
    let id = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id(&a), id(&b));
    assert_eq!(a.headers()["x-content-type-options"], "nosniff");
    assert_eq!(a.headers()["x-frame-options"], "DENY");
    assert_eq!(a.headers()["cache-control"], "no-store");
    // A caller's request id is kept, so logs on both sides line up.
    let mine = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "agency-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(mine.headers()["x-request-id"], "agency-trace-42");
    app.stop().await;
}

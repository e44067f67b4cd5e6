//! SPEC G8: every error, wherever it arises, is RFC 9457 problem+json.

use crate::helpers::{Backend, assert_problem, both_backends, spawn_app};

both_backends!(unknown_routes_and_wrong_methods_are_problems);

async fn unknown_routes_and_wrong_methods_are_problems(backend: Backend) {
    let (_env, app) = spawn_app(backend).await;
    let body = assert_problem(app.get("/no/such/page").await, 404).await;
    assert_eq!(body["type"], "/problems/not-found");

    let post = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(post.headers()["allow"], "GET,HEAD");
    let body = assert_problem(post, 405).await;
    assert_eq!(body["type"], "/problems/method-not-allowed");

    let hostile = app
        .client
        .get(app.url("/%2e%2e/%2e%2e/etc/passwd"))
        .send()
        .await
        .unwrap();
    assert_problem(hostile, 404).await;
    app.stop().await;
}

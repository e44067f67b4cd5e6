//! The OpenAPI document: valid OpenAPI 3.1, generated from the code, naming every route
//! the server exposes, with an example for every error.

use serde_json::Value;

use crate::helpers::Backend;

/// Every JSON route of SPEC §4 (and the few the web UI adds), as `METHOD path`.
const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /api/v1/catalog",
    "POST /auth/register/start",
    "POST /auth/register/finish",
    "POST /auth/login/start",
    "POST /auth/login/finish",
    "POST /auth/logout",
    "POST /vault/unlock",
    "POST /vault/recover",
    "GET /me/documents",
    "POST /me/documents",
    "GET /me/documents/{id}",
    "PUT /me/documents/{id}",
    "DELETE /me/documents/{id}",
    "GET /me/documents/{id}/file",
    "GET /me/grants",
    "POST /me/grants",
    "POST /me/grants/{id}/revoke",
    "GET /me/grants/{id}/receipt",
    "GET /me/requests",
    "POST /me/requests/{id}/approve",
    "POST /me/requests/{id}/deny",
    "POST /api/v1/access-requests",
    "POST /api/v1/enrolment-codes",
    "GET /api/v1/access-requests/{id}",
    "GET /api/v1/grants",
    "GET /api/v1/grants/{id}",
    "GET /api/v1/grants/{id}/documents",
    "GET /api/v1/grants/{id}/documents/{doc_id}",
    "GET /api/v1/grants/{id}/documents/{doc_id}/file",
    "POST /api/v1/issued-documents",
    "GET /api/v1/audit/public-key",
    "POST /api/v1/audit/confirm-identity",
    "POST /me/step-up/start",
    "POST /me/step-up/finish",
    "GET /me/emergency",
    "PUT /me/emergency",
    "POST /api/v1/emergency-access",
    "GET /api/v1/audit/emergencies",
    "POST /api/v1/webhooks",
    "GET /api/v1/webhooks/deliveries",
    "POST /api/v1/grants/{id}/revocation-ack",
    "POST /api/v1/grants/{id}/retention-ack",
];

fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-0000-4000-8000-000000000000")
        .replace("{doc_id}", "00000000-0000-4000-8000-000000000001")
}

#[tokio::test]
async fn the_openapi_document_is_valid_3_1_and_covers_every_route() {
    // With a metrics token, so `/metrics` is served (behind it) like every documented route.
    let mut env = crate::helpers::TestEnv::new(Backend::Sqlite).await;
    env.vars.insert(
        "CUSTODIA_METRICS_TOKEN".into(),
        "a-token-for-the-openapi-test".into(),
    );
    let app = env.start().await.unwrap();
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));

    let schema: Value =
        serde_json::from_str(include_str!("fixtures/openapi-3.1-schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut broken = doc.clone();
    broken["openapi"] = "3.0.3".into();
    assert!(
        !validator.is_valid(&broken),
        "the validator must be able to fail"
    );

    let paths = doc["paths"].as_object().unwrap();
    for route in ROUTES {
        let (method, path) = route.split_once(' ').unwrap();
        assert!(
            paths
                .get(path)
                .and_then(|p| p.get(method.to_ascii_lowercase()))
                .is_some(),
            "{route} is missing from the OpenAPI document"
        );
    }
    // And the converse: every documented operation is really served (no 404 fallback,
    // no 405), so the document and the server cannot drift apart.
    let client = reqwest::Client::new();
    let mut operations = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete"] {
            let Some(op) = item.get(method) else { continue };
            operations += 1;
            let response = client
                .request(
                    method.to_ascii_uppercase().parse().unwrap(),
                    app.url(&concrete(path)),
                )
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let fallback = status == 404 && body["detail"] == "There is nothing at this address.";
            assert!(
                !fallback && status != 405,
                "{method} {path} is documented but not served ({status})"
            );
            // A path parameter names a placeholder of its path; nothing else is `in: path`
            // (a generated client would put it in the URL and break).
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: '{name}' is declared in: path but is no placeholder"
                    );
                }
            }
            // Every JSON answer has an example.
            for (code, response) in op["responses"].as_object().unwrap() {
                if let Some(json) = response["content"].get("application/json") {
                    assert!(
                        json.get("example").is_some(),
                        "{method} {path} {code} has no example"
                    );
                }
            }
            // Every operation documents its errors as problem+json with an example.
            let responses = op["responses"].as_object().unwrap();
            let errors: Vec<_> = responses
                .keys()
                .filter(|s| s.starts_with('4') || s.starts_with('5'))
                .collect();
            if path.starts_with("/api/v1/grants") || path.starts_with("/me/") {
                assert!(!errors.is_empty(), "{method} {path} documents no errors");
            }
            for code in errors {
                let content = &responses[code]["content"]["application/problem+json"];
                assert!(
                    content.get("example").is_some() || content["schema"].get("$ref").is_some(),
                    "{method} {path} {code} has no problem example"
                );
            }
        }
    }
    assert!(operations >= ROUTES.len());
    // Each operation has its own id (generated clients name their functions by it).
    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                if let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}")) {
                    panic!("operationId {id} is used by {other} and {method} {path}");
                }
            }
        }
    }
    // The session cookie is documented by the name the server sets.
    assert_eq!(
        doc["components"]["securitySchemes"]["citizen_session"]["name"],
        "custodia-session"
    );

    // The rendered reference lists them for people.
    let page = app.get("/api/v1/docs").await.text().await.unwrap();
    assert!(page.contains("/api/v1/grants/{id}/documents/{doc_id}/file"));
    assert!(!page.contains("<script"));
}

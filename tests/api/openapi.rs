//! The OpenAPI document: valid OpenAPI 3.1, generated from the code, naming every route
//! the server exposes, with an example for every error.

use serde_json::{Value, json};

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
            if let Some(id) = op.get("operationId").and_then(Value::as_str)
                && let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}"))
            {
                panic!("operationId {id} is used by {other} and {method} {path}");
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

/// What a client generated from `old` relies on and `new` no longer offers: removed
/// operations, parameters, schemas and fields, a field or parameter whose type changed, an
/// optional parameter or request field that became required.
fn breaking_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let empty = serde_json::Map::new();
    let object = |v: &Value| v.as_object().cloned().unwrap_or_else(|| empty.clone());
    let shape = |s: &Value| {
        (
            s.get("type").cloned(),
            s.get("$ref").cloned(),
            s.get("format").cloned(),
        )
    };
    // A parameter travels as text and is left out to mean nothing, so what a client sends
    // for it is its non-null types, wherever the schema names them (`type`, or the members
    // of a `oneOf`/`anyOf`); a stated format or pattern tells which texts the server always
    // required, and changes nothing a client sends.
    let wire_types = |s: &Value| {
        let mut types = std::collections::BTreeSet::new();
        let mut add = |t: &Value| match t {
            Value::String(t) => {
                types.insert(t.clone());
            }
            Value::Array(ts) => {
                types.extend(ts.iter().filter_map(|t| t.as_str().map(str::to_owned)))
            }
            _ => {}
        };
        add(&s["type"]);
        for key in ["oneOf", "anyOf"] {
            for member in s[key].as_array().into_iter().flatten() {
                add(&member["type"]);
            }
        }
        types.remove("null");
        (types, s.get("$ref").cloned())
    };
    for (path, item) in object(&old["paths"]) {
        for (method, op) in object(&item) {
            let Some(now) = new["paths"].get(&path).and_then(|p| p.get(&method)) else {
                out.push(format!("{method} {path} was removed"));
                continue;
            };
            for p in op["parameters"].as_array().into_iter().flatten() {
                let found = now["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|q| q["name"] == p["name"] && q["in"] == p["in"]);
                match found {
                    None => out.push(format!(
                        "{method} {path}: parameter {} was removed",
                        p["name"]
                    )),
                    Some(q) => {
                        if wire_types(&p["schema"]) != wire_types(&q["schema"]) {
                            out.push(format!(
                                "{method} {path}: parameter {} was retyped",
                                p["name"]
                            ));
                        }
                        if p["required"] != true && q["required"] == true {
                            out.push(format!(
                                "{method} {path}: parameter {} became required",
                                p["name"]
                            ));
                        }
                    }
                }
            }
        }
    }
    let request_bodies: Vec<String> = object(&old["paths"])
        .values()
        .flat_map(|item| object(item).into_values())
        .filter_map(|op| {
            op.pointer("/requestBody/content/application~1json/schema/$ref")
                .and_then(Value::as_str)
                .map(|r| r.trim_start_matches("#/components/schemas/").to_owned())
        })
        .collect();
    for (name, schema) in object(&old["components"]["schemas"]) {
        let Some(now) = new["components"]["schemas"].get(&name) else {
            out.push(format!("schema {name} was removed"));
            continue;
        };
        for (field, was) in object(&schema["properties"]) {
            match now["properties"].get(&field) {
                None => out.push(format!("{name}.{field} was removed")),
                Some(is) if shape(&was) != shape(is) => {
                    out.push(format!("{name}.{field} was retyped"))
                }
                Some(_) => {}
            }
        }
        if request_bodies.contains(&name) {
            let required =
                |s: &Value| -> Vec<Value> { s["required"].as_array().cloned().unwrap_or_default() };
            for field in required(now) {
                if !required(&schema).contains(&field)
                    && schema["properties"]
                        .get(field.as_str().unwrap_or_default())
                        .is_some()
                {
                    out.push(format!("{name}.{field} became required"));
                }
            }
        }
    }
    out
}

/// The versioning policy (`docs/AGENCY_GUIDE.md` §11), enforced: nothing `/api/v1` was
/// published with is removed or retyped in the document the server serves.
#[tokio::test]
async fn no_documented_field_is_removed_or_retyped() {
    let env = crate::helpers::TestEnv::new(Backend::Sqlite).await;
    let app = env.start().await.unwrap();
    let served: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let published: Value = serde_json::from_str(include_str!("fixtures/openapi-v1.json")).unwrap();
    let broken = breaking_changes(&published, &served);
    assert!(
        broken.is_empty(),
        "breaking changes to /api/v1: {broken:#?}"
    );

    // The check fails on breaking changes: a removed response field, a retyped one, a
    // removed parameter, an optional request field made required, a removed route.
    let mut changed = served.clone();
    let grant = &mut changed["components"]["schemas"]["GrantView"]["properties"];
    grant.as_object_mut().unwrap().remove("purpose");
    grant["reads"]["type"] = json!("string");
    let ops = changed["paths"]["/api/v1/grants"]["get"]["parameters"]
        .as_array_mut()
        .unwrap();
    ops.retain(|p| p["name"] != "cursor");
    changed["components"]["schemas"]["GrantRequest"]["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("max_reads"));
    changed["paths"]
        .as_object_mut()
        .unwrap()
        .remove("/api/v1/access-requests/{id}");
    let found = breaking_changes(&published, &changed);
    assert_eq!(found.len(), 5, "{found:#?}");
    // Additions are not breaking.
    let mut added = served.clone();
    added["components"]["schemas"]["GrantView"]["properties"]["something_new"] =
        json!({ "type": "string" });
    assert!(breaking_changes(&published, &added).is_empty());
}

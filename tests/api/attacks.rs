//! The attack corpus (issue 18, part 7): every route of the served OpenAPI document, sent
//! what an attacker sends — malformed JSON, wrong types, unknown fields, huge strings, NUL
//! and bidirectional-override characters, path ids that are not ids, other principals'
//! ids, hostile query strings, forged credentials, missing or wrong headers and content
//! types, broken multipart bodies. Each case must be refused with an RFC 9457 problem
//! (its `status` the response's) and must change nothing: a fingerprint of every table a
//! change could touch is the same after each case as before the first.
//!
//! Cases come from the document (so a new route is attacked without anyone remembering
//! to), from the body schemas it names, and from tables below for what the document does
//! not say (query strings, multipart). Each case carries its own client address (behind a
//! trusted proxy) so per-address limits do not answer for the checks.

use reqwest::Method;
use serde_json::{Value, json};

use crate::agency_api::{clearance, sign_deposit};
use crate::agency_kit::Agency;
use crate::auditors::{Auditor, enrol_at};
use crate::citizen_kit::{Citizen, pdf_bytes};
use crate::helpers::{Backend, TestApp, TestEnv, both_backends, national_id};

both_backends!(every_route_refuses_hostile_input_and_changes_nothing);

/// Who sends a case.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    Citizen,
    Agency,
    Auditor,
}

#[derive(Clone, Debug)]
enum Body {
    None,
    /// Raw bytes with a content type.
    Raw(String, Vec<u8>),
}

#[derive(Clone, Debug)]
struct Case {
    label: String,
    method: Method,
    /// Already percent-encoded.
    path: String,
    who: Who,
    headers: Vec<(String, String)>,
    /// Send the session's CSRF token (citizen and auditor state changes).
    csrf: bool,
    body: Body,
    /// Only 403 or 404 will do (another principal's ids, unknown ids).
    hidden: bool,
}

impl Case {
    fn new(label: impl Into<String>, method: Method, path: impl Into<String>, who: Who) -> Self {
        Self {
            label: label.into(),
            method,
            path: path.into(),
            who,
            headers: Vec::new(),
            csrf: true,
            body: Body::None,
            hidden: false,
        }
    }

    fn json(mut self, text: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Raw("application/json".into(), text.into());
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// The principals and the ids the cases aim at.
struct World {
    app: TestApp,
    citizen: Citizen,
    agency: Agency,
    auditor: Auditor,
    /// Ids of the citizen's own things (where a route needs a real one of hers).
    own: Ids,
    /// Ids of things that belong to someone else: another citizen, another agency.
    foreign: Ids,
}

#[derive(Default)]
struct Ids {
    document: String,
    grant: String,
    request: String,
    passkey: String,
}

async fn world(backend: Backend) -> (TestEnv, World) {
    let mut env = TestEnv::new(backend).await;
    env.vars
        .insert("CUSTODIA_TRUSTED_PROXIES".into(), "127.0.0.1".into());
    let app = env.start().await.expect("server starts");
    let agency = Agency::create(&app, "攻击面测试局", custodia::agencies::Level::Provincial).await;
    let other_agency = Agency::create(&app, "另一局", custodia::agencies::Level::Provincial).await;
    let citizen = Citizen::register(&app, &national_id(601), "Target").await;
    let other = Citizen::register(&app, &national_id(602), "Bystander").await;

    let mut own = Ids::default();
    let mut foreign = Ids::default();
    own.document = citizen
        .licence("攻击测试公司", Some(pdf_bytes(8_000, "own")))
        .await;
    foreign.document = other
        .licence("旁观公司", Some(pdf_bytes(8_000, "other")))
        .await;
    own.grant = citizen
        .grant_to(
            &agency.id,
            json!({ "document_ids": [own.document], "tier": "full", "purpose": "核验", "duration_days": 30 }),
        )
        .await;
    foreign.grant = other
        .grant_to(
            &other_agency.id,
            json!({ "document_ids": [foreign.document], "tier": "full", "purpose": "核验", "duration_days": 30 }),
        )
        .await;
    let asked = agency.ask(&citizen.national_id, "verify", &[]).await;
    assert_eq!(asked.status(), 201);
    own.request = asked.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let asked = other_agency.ask(&other.national_id, "verify", &[]).await;
    foreign.request = asked.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = citizen.me().await.json().await.unwrap();
    own.passkey = me["passkeys"][0]["id"].as_str().unwrap_or("x").to_owned();
    let me: Value = other.me().await.json().await.unwrap();
    foreign.passkey = me["passkeys"][0]["id"].as_str().unwrap_or("x").to_owned();

    let link = custodia::auditors::invite(&app.state, "Corpus Auditor")
        .await
        .unwrap();
    let Ok(auditor) = enrol_at(&app.base, &link).await else {
        panic!("the auditor enrols");
    };
    (
        env,
        World {
            app,
            citizen,
            agency,
            auditor,
            own,
            foreign,
        },
    )
}

/// Everything a change could touch, as one string (both engines).
async fn fingerprint(app: &TestApp) -> String {
    const SQL: &str = "SELECT concat_ws(',', \
        (SELECT COUNT(*) FROM citizens), (SELECT COUNT(*) FROM credentials), \
        (SELECT COUNT(*) FROM sessions), (SELECT COUNT(*) FROM auditors), \
        (SELECT COUNT(*) FROM auditor_invites), (SELECT COUNT(*) FROM agencies), \
        (SELECT COUNT(*) FROM agencies WHERE disabled_at IS NOT NULL), \
        (SELECT COUNT(*) FROM agency_keys), (SELECT COUNT(*) FROM issuer_keys), \
        (SELECT COUNT(*) FROM documents WHERE deleted_at IS NULL), \
        (SELECT COUNT(*) FROM documents WHERE accepted_at IS NOT NULL), \
        (SELECT COALESCE(SUM(current_version), 0) FROM documents), \
        (SELECT COUNT(*) FROM document_versions), (SELECT COUNT(*) FROM pending_blobs), \
        (SELECT COUNT(*) FROM access_requests), \
        (SELECT COUNT(*) FROM access_requests WHERE status = 'pending'), \
        (SELECT COUNT(*) FROM grants), (SELECT COUNT(*) FROM grants WHERE status = 'active'), \
        (SELECT COALESCE(SUM(reads), 0) FROM grants), (SELECT COUNT(*) FROM grant_key_wraps), \
        (SELECT COUNT(*) FROM enrolment_codes), (SELECT COUNT(*) FROM idempotency_keys), \
        (SELECT COUNT(*) FROM oversight_keys), \
        (SELECT COUNT(*) FROM citizen_emergency_types), (SELECT COUNT(*) FROM emergency_key_wraps), \
        (SELECT COUNT(*) FROM emergency_accesses), \
        (SELECT COUNT(*) FROM emergency_accesses WHERE verdict IS NOT NULL), \
        (SELECT COUNT(*) FROM webhooks), (SELECT COUNT(*) FROM webhooks WHERE disabled_at IS NULL), \
        (SELECT COUNT(*) FROM webhook_deliveries), \
        (SELECT COUNT(*) FROM grants WHERE revocation_ack_at IS NOT NULL), \
        (SELECT COUNT(*) FROM grants WHERE retention_ack_at IS NOT NULL))";
    let mut tx = app.state.store.begin().await.unwrap();
    let text: String = custodia::on_engine!(&mut tx, c => {
        sqlx::query_scalar(SQL).fetch_one(&mut **c).await.unwrap()
    });
    text
}

/// Hostile stand-ins for a path id: not ids, encodings, traversal, injection, huge.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("word", "not-an-id".into()),
        ("zero", "0".into()),
        ("negative", "-1".into()),
        ("traversal", "..%2F..%2Fetc%2Fpasswd".into()),
        ("nul", "%00".into()),
        ("sql", "%27%20OR%201%3D1--".into()),
        ("bidi", "%E2%80%AE".into()),
        ("huge", "a".repeat(4000)),
        ("nil uuid", "00000000-0000-0000-0000-000000000000".into()),
        ("unknown uuid", uuid::Uuid::new_v4().to_string()),
        ("uuid with junk", format!("{}%00", uuid::Uuid::new_v4())),
    ]
}

/// Wrong-typed stand-ins for a JSON value of `kind` (the schema's `type`).
fn wrong_types(kind: &str) -> Vec<Value> {
    match kind {
        "string" => vec![json!(12345), json!(["x"]), json!({"x": 1}), json!(true)],
        "integer" | "number" => vec![
            json!("12"),
            json!(1e300),
            json!(-99_999_999_999i64),
            json!([1]),
        ],
        "array" => vec![json!("x"), json!({"0": "x"}), json!(7)],
        "boolean" => vec![json!("yes"), json!(1)],
        _ => vec![json!([]), json!("x"), json!(7)],
    }
}

/// Text an attacker puts where a person's text goes.
fn hostile_strings() -> Vec<(&'static str, String)> {
    vec![
        ("nul", "abc\u{0}def".into()),
        ("bidi override", "\u{202E}txt.exe".into()),
        ("zero width", "a\u{200B}b".into()),
        ("huge", "长".repeat(100_000)),
    ]
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or(schema),
        None => schema,
    }
}

/// Valid bodies for routes where a valid body would change something: a mutation of
/// one property must then be what refuses it.
fn base_body(world: &World, method: &Method, path: &str) -> Value {
    match (method.as_str(), path) {
        ("POST", "/api/v1/access-requests") => json!({
            "national_id": world.citizen.national_id, "document_types": ["business_license"],
            "tier": "fields", "fields": ["company_name"], "purpose_code": "business_registration",
            "purpose": "设立登记", "legal_basis": "《条例》", "duration_days": 30, "retention_days": 90
        }),
        ("POST", "/me/grants") => json!({
            "agency_id": world.agency.id, "document_ids": [world.own.document], "tier": "fields",
            "fields": ["company_name"], "purpose": "核验", "duration_days": 7, "max_reads": 3
        }),
        ("POST", "/me/requests/{id}/approve") => json!({ "tier": "verify", "duration_days": 7 }),
        ("POST", "/api/v1/enrolment-codes") => json!({ "national_id": national_id(603) }),
        ("PUT", "/me/emergency") => json!({ "document_types": ["business_license"] }),
        ("POST", "/api/v1/emergency-access") => json!({
            "national_id": world.citizen.national_id, "document_types": ["business_license"],
            "tier": "verify", "justification": "An emergency that cannot wait for consent",
            "legal_basis": "《条例》", "case": "CASE-1", "duration_minutes": 30
        }),
        ("POST", "/api/v1/grants/{id}/retention-ack") => json!({
            "deleted_at": "2026-01-01T00:00:00Z", "statement": "Every copy we kept is deleted."
        }),
        ("POST", "/api/v1/audit/emergencies/{grant_id}/review") => json!({
            "verdict": "unjustified", "note": "No emergency was shown at all."
        }),
        ("POST", "/api/v1/issued-documents") => sign_deposit(
            &custodia_crypto::sign::SigningKey::generate(),
            clearance(&world.citizen.national_id, None),
        ),
        _ => json!({}),
    }
}

/// `path` with its placeholders filled from `ids`; `None` when the path names none of
/// their kinds.
fn fill(ids: &Ids, path: &str) -> Option<String> {
    let id = if path.starts_with("/me/documents") {
        &ids.document
    } else if path.starts_with("/me/grants") || path.starts_with("/api/v1/grants") {
        &ids.grant
    } else if path.starts_with("/me/requests") || path.starts_with("/api/v1/access-requests") {
        &ids.request
    } else if path.starts_with("/me/passkeys") {
        &ids.passkey
    } else {
        return None;
    };
    Some(
        path.replace("{id}", id)
            .replace("{doc_id}", &ids.document)
            .replace("{seq}", "1"),
    )
}

/// The path with its placeholders filled: the citizen's or agency's own ids.
fn filled(world: &World, path: &str) -> String {
    fill(&world.own, path).unwrap_or_else(|| {
        path.replace("{id}", "1")
            .replace("{doc_id}", "1")
            .replace("{seq}", "1")
    })
}

fn foreign_filled(world: &World, path: &str) -> Option<String> {
    fill(&world.foreign, path)
}

fn who_for(path: &str, secured: bool) -> Who {
    if path.starts_with("/api/v1/audit/")
        && ["events", "export", "verify", "confirm-identity"]
            .iter()
            .any(|p| path.ends_with(p))
    {
        Who::Auditor
    } else if path.starts_with("/me")
        || path.starts_with("/vault")
        || path.starts_with("/auth/logout")
    {
        Who::Citizen
    } else if secured {
        Who::Agency
    } else {
        Who::Nobody
    }
}

/// Routes whose successful answer is the point of them, with nothing to attack but
/// credentials (health, the public log head).
fn public_and_harmless(path: &str) -> bool {
    matches!(
        path,
        "/healthz"
            | "/readyz"
            | "/metrics"
            | "/api/v1/catalog"
            | "/api/v1/audit/public-key"
            | "/api/v1/audit/checkpoint"
            | "/api/v1/openapi.json"
    )
}

/// Officer and case headers an agency read needs (so the case fails on what it attacks).
fn officer(case: Case) -> Case {
    case.header("x-officer-id", "officer-7")
        .header("x-case-id", "CASE-1")
}

fn cases(world: &World, doc: &Value) -> Vec<Case> {
    let mut out = Vec::new();
    let paths = doc["paths"].as_object().unwrap();
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let who = who_for(path, secured);
            let agency_read = path.starts_with("/api/v1/grants/") && path.contains("/documents");
            let wrap = |c: Case| if agency_read { officer(c) } else { c };
            let name = format!("{method} {path}");
            let json_body = op
                .pointer("/requestBody/content/application~1json/schema")
                .map(|s| resolve(doc, s));
            let multipart = op
                .pointer("/requestBody/content/multipart~1form-data")
                .is_some();
            let base = base_body(world, &method, path);
            let own_path = filled(world, path);
            let valid_multipart = {
                let fields = crate::citizen_kit::licence_fields("他人公司").to_string();
                multipart_body(&[
                    ("type", None, b"business_license"),
                    ("fields", None, fields.as_bytes()),
                ])
            };
            let with_body = |c: Case| match (&json_body, multipart) {
                (Some(_), _) => c.json(base.to_string()),
                (None, true) => Case {
                    body: Body::Raw(valid_multipart.0.clone(), valid_multipart.1.clone()),
                    ..c
                },
                _ => c,
            };
            // Approving takes an optional body: an empty one is no narrowing.
            let optional_body = path == "/me/requests/{id}/approve";

            // Credentials: none, forged, another kind's.
            if !matches!(who, Who::Nobody) {
                out.push(wrap(with_body(Case::new(
                    format!("{name}: no credentials"),
                    method.clone(),
                    own_path.clone(),
                    Who::Nobody,
                ))));
                for (what, value) in [
                    ("forged bearer", format!("Bearer cus_{}", "A".repeat(43))),
                    ("huge bearer", format!("Bearer cus_{}", "A".repeat(6000))),
                    ("basic auth", "Basic YWRtaW46YWRtaW4=".to_owned()),
                    ("bearer with junk", "Bearer \u{7f}cus_x".to_owned()),
                ] {
                    out.push(wrap(with_body(
                        Case::new(
                            format!("{name}: {what}"),
                            method.clone(),
                            own_path.clone(),
                            Who::Nobody,
                        )
                        .header("authorization", value),
                    )));
                }
                out.push(wrap(with_body(Case::new(
                    format!("{name}: forged session cookie"),
                    method.clone(),
                    own_path.clone(),
                    Who::Nobody,
                )
                .header("cookie", "custodia-session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; custodia-audit=AAAA"))));
                let wrong_kind = match who {
                    Who::Agency => Who::Citizen,
                    _ => Who::Agency,
                };
                out.push(wrap(with_body(Case::new(
                    format!("{name}: wrong kind of principal"),
                    method.clone(),
                    own_path.clone(),
                    wrong_kind,
                ))));
                if matches!(who, Who::Citizen | Who::Auditor) && method != Method::GET {
                    let mut c = with_body(Case::new(
                        format!("{name}: no CSRF token"),
                        method.clone(),
                        own_path.clone(),
                        who,
                    ));
                    c.csrf = false;
                    out.push(c.clone());
                    out.push(
                        Case {
                            label: format!("{name}: wrong CSRF token"),
                            ..c
                        }
                        .header("x-csrf-token", "0".repeat(43)),
                    );
                }
            }
            if public_and_harmless(path) {
                continue;
            }

            // Path ids that are not ids, and other principals' ids.
            let placeholders: Vec<&str> = path
                .split('/')
                .filter(|s| s.starts_with('{') && s.ends_with('}'))
                .collect();
            for ph in &placeholders {
                for (what, bad) in bad_ids() {
                    let p = filled(world, &path.replace(ph, &bad));
                    out.push(wrap(with_body(Case::new(
                        format!("{name}: {ph} {what}"),
                        method.clone(),
                        p,
                        who,
                    ))));
                }
            }
            if !placeholders.is_empty()
                && let Some(p) = foreign_filled(world, path)
            {
                let mut c = wrap(with_body(Case::new(
                    format!("{name}: another principal's id"),
                    method.clone(),
                    p,
                    who,
                )));
                c.hidden = true;
                out.push(c);
            }
            if agency_read {
                let mut c = with_body(Case::new(
                    format!("{name}: no officer"),
                    method.clone(),
                    own_path.clone(),
                    who,
                ));
                c = c.header("x-case-id", "CASE-1");
                out.push(c);
                for (what, v) in [
                    ("huge officer", "o".repeat(500)),
                    ("tab in officer", "a\tb".into()),
                ] {
                    out.push(
                        with_body(Case::new(
                            format!("{name}: {what}"),
                            method.clone(),
                            own_path.clone(),
                            who,
                        ))
                        .header("x-officer-id", v)
                        .header("x-case-id", "CASE-1"),
                    );
                }
            }

            // Bodies.
            if let Some(schema) = json_body {
                for (what, raw) in [
                    ("truncated", "{\"a\":".to_owned()),
                    ("open brace", "{".to_owned()),
                    ("trailing junk", "{}}".to_owned()),
                    (
                        "empty",
                        if optional_body {
                            " x".to_owned()
                        } else {
                            String::new()
                        },
                    ),
                    ("bare word", "nul".to_owned()),
                    (
                        "invalid utf-8",
                        String::from_utf8_lossy(b"{\"a\":\"\xff\"}").into_owned(),
                    ),
                    (
                        "deep nesting",
                        format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
                    ),
                    ("array", "[]".to_owned()),
                    ("string", "\"x\"".to_owned()),
                    ("number", "1".to_owned()),
                    ("null", "null".to_owned()),
                    ("duplicate keys", "{\"a\":1,\"a\":2}".to_owned()),
                ] {
                    out.push(
                        Case::new(
                            format!("{name}: body {what}"),
                            method.clone(),
                            own_path.clone(),
                            who,
                        )
                        .json(raw),
                    );
                }
                let mut raw_utf8 = b"{\"purpose\":\"".to_vec();
                raw_utf8.extend_from_slice(b"\xff\xfe");
                raw_utf8.extend_from_slice(b"\"}");
                out.push(
                    Case::new(
                        format!("{name}: body raw bad utf-8"),
                        method.clone(),
                        own_path.clone(),
                        who,
                    )
                    .json(raw_utf8),
                );
                let mut unknown = base.clone();
                unknown["zzz_unknown_field"] = json!(1);
                out.push(
                    Case::new(
                        format!("{name}: unknown field"),
                        method.clone(),
                        own_path.clone(),
                        who,
                    )
                    .json(unknown.to_string()),
                );
                for ct in [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "application/xml",
                ] {
                    let mut c = Case::new(
                        format!("{name}: content type {ct}"),
                        method.clone(),
                        own_path.clone(),
                        who,
                    );
                    c.body = Body::Raw(ct.into(), base.to_string().into_bytes());
                    out.push(c);
                }
                out.push(
                    Case::new(
                        format!("{name}: 256 KiB body"),
                        method.clone(),
                        own_path.clone(),
                        who,
                    )
                    .json(json!({ "x": "A".repeat(256 << 10) }).to_string()),
                );
                let props = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut names: Vec<(String, String)> = props
                    .iter()
                    .map(|(k, v)| {
                        let v = resolve(doc, v);
                        let kind = v
                            .get("type")
                            .map(|t| match t {
                                Value::Array(a) => {
                                    a.iter().find(|x| *x != "null").cloned().unwrap_or_default()
                                }
                                other => other.clone(),
                            })
                            .and_then(|t| t.as_str().map(str::to_owned))
                            .unwrap_or_else(|| "object".to_owned());
                        (k.clone(), kind)
                    })
                    .collect();
                // The deposit's body schema is open: its fields are the deposit's.
                if names.is_empty() && base.is_object() {
                    names = base
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| {
                            let kind = match v {
                                Value::String(_) => "string",
                                Value::Number(_) => "integer",
                                Value::Array(_) => "array",
                                Value::Bool(_) => "boolean",
                                _ => "object",
                            };
                            (k.clone(), kind.to_owned())
                        })
                        .collect();
                }
                for (prop, kind) in names {
                    for wrong in wrong_types(&kind) {
                        let mut b = base.clone();
                        b[&prop] = wrong.clone();
                        out.push(
                            Case::new(
                                format!("{name}: {prop} = {wrong}"),
                                method.clone(),
                                own_path.clone(),
                                who,
                            )
                            .json(b.to_string()),
                        );
                    }
                    if kind == "string" || kind == "array" {
                        for (what, s) in hostile_strings() {
                            let mut b = base.clone();
                            b[&prop] = if kind == "array" {
                                json!([s])
                            } else {
                                json!(s)
                            };
                            out.push(
                                Case::new(
                                    format!("{name}: {prop} {what}"),
                                    method.clone(),
                                    own_path.clone(),
                                    who,
                                )
                                .json(b.to_string()),
                            );
                        }
                    }
                }
            }
            if multipart {
                out.extend(multipart_cases(&name, &method, &own_path, who));
            }
        }
    }
    out.extend(query_cases(world));
    out.extend(idempotency_cases(world));
    out
}

/// One multipart part: name, file name (for a file part), bytes.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

fn multipart_body(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "XcorpusBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn multipart_cases(name: &str, method: &Method, path: &str, who: Who) -> Vec<Case> {
    let fields = crate::citizen_kit::licence_fields("多部件公司").to_string();
    let pdf = pdf_bytes(4_000, "mp");
    let not_pdf = b"MZ\x90\x00 this is not a document".to_vec();
    let huge_type = "t".repeat(100_000);
    let variants: Vec<(&str, Vec<Part<'_>>)> = vec![
        ("no parts", vec![]),
        ("no type", vec![("fields", None, fields.as_bytes())]),
        (
            "unknown type",
            vec![
                ("type", None, b"starship_licence"),
                ("fields", None, fields.as_bytes()),
            ],
        ),
        (
            "huge type",
            vec![
                ("type", None, huge_type.as_bytes()),
                ("fields", None, fields.as_bytes()),
            ],
        ),
        (
            "fields not json",
            vec![
                ("type", None, b"business_license"),
                ("fields", None, b"{not json"),
            ],
        ),
        (
            "fields an array",
            vec![
                ("type", None, b"business_license"),
                ("fields", None, b"[1,2]"),
            ],
        ),
        (
            "fields with nul",
            vec![
                ("type", None, b"business_license"),
                ("fields", None, br#"{"company_name":"a\u0000b"}"#),
            ],
        ),
        (
            "fields with bidi",
            vec![
                ("type", None, b"business_license"),
                (
                    "fields",
                    None,
                    "{\"company_name\":\"\u{202E}abc\"}".as_bytes(),
                ),
            ],
        ),
        (
            "unknown part",
            vec![
                ("type", None, b"business_license"),
                ("fields", None, fields.as_bytes()),
                ("zzz", None, b"1"),
            ],
        ),
        (
            "not a pdf",
            vec![
                ("type", None, b"business_license"),
                ("fields", None, fields.as_bytes()),
                ("file", Some("a.pdf"), &not_pdf),
            ],
        ),
        (
            "two files",
            vec![
                ("type", None, b"business_license"),
                ("fields", None, fields.as_bytes()),
                ("file", Some("a.pdf"), &pdf),
                ("file", Some("b.pdf"), &pdf),
            ],
        ),
        (
            "type twice",
            vec![
                ("type", None, b"business_license"),
                ("type", None, b"tax_clearance"),
                ("fields", None, fields.as_bytes()),
            ],
        ),
        ("document not json", vec![("document", None, b"{nope")]),
        ("file without document", vec![("file", Some("a.pdf"), &pdf)]),
    ];
    let mut out = Vec::new();
    for (what, parts) in variants {
        let (ct, body) = multipart_body(&parts);
        let mut c = Case::new(
            format!("{name}: multipart {what}"),
            method.clone(),
            path.to_owned(),
            who,
        );
        c.body = Body::Raw(ct, body);
        out.push(c);
    }
    for (what, ct, body) in [
        (
            "no boundary",
            "multipart/form-data",
            b"--x\r\n\r\n--x--".to_vec(),
        ),
        (
            "wrong boundary",
            "multipart/form-data; boundary=abc",
            b"--zzz\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nx\r\n--zzz--\r\n"
                .to_vec(),
        ),
        (
            "truncated",
            "multipart/form-data; boundary=abc",
            b"--abc\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\nbusiness_lic".to_vec(),
        ),
        (
            "json instead",
            "application/json",
            b"{\"type\":\"business_license\"}".to_vec(),
        ),
    ] {
        let mut c = Case::new(
            format!("{name}: multipart {what}"),
            method.clone(),
            path.to_owned(),
            who,
        );
        c.body = Body::Raw(ct.into(), body);
        out.push(c);
    }
    out
}

/// Query strings the routes take, with values no route may accept.
fn query_cases(world: &World) -> Vec<Case> {
    let grant = &world.own.grant;
    let doc = &world.own.document;
    // (path, who, parameters, needs officer headers, refuses unknown parameters — the
    // filters whose typo would otherwise widen or narrow what is shown; plain reads
    // ignore unknown parameters as HTTP caches and cache-busters expect).
    let routes: Vec<(String, Who, Vec<&str>, bool, bool)> = vec![
        (
            "/api/v1/audit/events".into(),
            Who::Auditor,
            vec!["limit", "cursor", "since", "until"],
            false,
            false,
        ),
        (
            "/api/v1/audit/export".into(),
            Who::Auditor,
            vec!["since", "until", "format"],
            false,
            true,
        ),
        (
            "/me/activity".into(),
            Who::Citizen,
            vec!["limit", "cursor", "since", "until"],
            false,
            true,
        ),
        (
            "/api/v1/audit/consistency".into(),
            Who::Nobody,
            vec!["from", "to"],
            false,
            false,
        ),
        (
            "/api/v1/grants".into(),
            Who::Agency,
            vec!["limit", "cursor"],
            false,
            false,
        ),
        (
            format!("/me/documents/{doc}"),
            Who::Citizen,
            vec!["version"],
            false,
            false,
        ),
        (
            format!("/me/documents/{doc}/file"),
            Who::Citizen,
            vec!["version", "download"],
            false,
            false,
        ),
        (
            format!("/api/v1/grants/{grant}/documents/{doc}"),
            Who::Agency,
            vec!["fields"],
            true,
            true,
        ),
    ];
    let values = [
        ("negative", "-1"),
        ("overflow", "99999999999999999999999"),
        ("nul", "%00"),
        ("bad utf-8", "%FF%FE"),
        ("array", "%5B%5D"),
        ("huge", "HUGE"),
        ("injection", "%27%20OR%201%3D1--"),
    ];
    let mut out = Vec::new();
    for (path, who, params, officer_needed, strict) in routes {
        for p in params {
            for (what, v) in values {
                let v = if v == "HUGE" {
                    "9".repeat(5000)
                } else {
                    v.to_owned()
                };
                // The consistency proof and the fields filter need their partner
                // parameter to get past it.
                let extra = match p {
                    "from" => "&to=1",
                    "to" => "&from=1",
                    _ => "",
                };
                let mut c = Case::new(
                    format!("GET {path}?{p}= {what}"),
                    Method::GET,
                    format!("{path}?{p}={v}{extra}"),
                    who,
                );
                if officer_needed {
                    c = officer(c);
                }
                out.push(c);
            }
            let mut twice = Case::new(
                format!("GET {path}: {p} twice"),
                Method::GET,
                format!("{path}?{p}=1&{p}=2"),
                who,
            );
            if officer_needed {
                twice = officer(twice);
            }
            if p != "fields" {
                out.push(twice);
            }
        }
        if strict {
            let mut unknown = Case::new(
                format!("GET {path}: unknown parameter"),
                Method::GET,
                format!("{path}?zzz=1"),
                who,
            );
            if officer_needed {
                unknown = officer(unknown);
            }
            out.push(unknown);
        }
    }
    out
}

fn idempotency_cases(world: &World) -> Vec<Case> {
    let body = base_body(world, &Method::POST, "/api/v1/access-requests");
    let mut bad_body = body.clone();
    bad_body["tier"] = json!("everything");
    let mut out = Vec::new();
    for (what, key) in [
        ("huge", "k".repeat(300)),
        ("space", "a b".into()),
        ("tab", "a\tb".into()),
        ("empty", String::new()),
    ] {
        out.push(
            Case::new(
                format!("POST /api/v1/access-requests: Idempotency-Key {what}"),
                Method::POST,
                "/api/v1/access-requests",
                Who::Agency,
            )
            .json(body.to_string())
            .header("idempotency-key", key),
        );
    }
    out.push(
        Case::new(
            "POST /api/v1/access-requests: idempotent invalid body",
            Method::POST,
            "/api/v1/access-requests",
            Who::Agency,
        )
        .json(bad_body.to_string())
        .header("idempotency-key", uuid::Uuid::new_v4().to_string()),
    );
    out
}

async fn send(world: &World, case: &Case, n: usize) -> reqwest::Response {
    let (http, csrf, bearer) = match case.who {
        Who::Nobody => (reqwest::Client::new(), None, None),
        Who::Citizen => (
            world.citizen.http.clone(),
            Some(world.citizen.csrf.clone()),
            None,
        ),
        Who::Auditor => (
            world.auditor.http.clone(),
            Some(world.auditor.csrf.clone()),
            None,
        ),
        Who::Agency => (reqwest::Client::new(), None, Some(world.agency.key.clone())),
    };
    let url = format!("{}{}", world.app.base, case.path);
    let mut r = http
        .request(case.method.clone(), url)
        .header(
            "x-forwarded-for",
            format!("198.18.{}.{}", n / 250, n % 250 + 1),
        )
        .header("accept-encoding", "gzip, br, zstd");
    if let Some(key) = bearer {
        r = r.bearer_auth(key);
    }
    if case.csrf
        && let Some(token) = csrf
        && !case.headers.iter().any(|(h, _)| h == "x-csrf-token")
    {
        r = r.header("x-csrf-token", token);
    }
    for (h, v) in &case.headers {
        match reqwest::header::HeaderValue::from_bytes(v.as_bytes()) {
            Ok(v) => r = r.header(h.as_str(), v),
            Err(_) => r = r.header(h.as_str(), v.escape_default().to_string()),
        }
    }
    if let Body::Raw(ct, bytes) = &case.body {
        r = r.header("content-type", ct.as_str()).body(bytes.clone());
    }
    // A server that answers an oversized body early closes that connection; a pooled
    // connection can be caught closing. Clients retry once on a fresh one, and so does
    // this (a server that fails the request twice still fails the case).
    let retry = r.try_clone();
    match r.send().await {
        Ok(response) => response,
        Err(first) => match retry {
            Some(again) => again
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: {first}; retried: {e}", case.label)),
            None => panic!("{}: {first}", case.label),
        },
    }
}

async fn every_route_refuses_hostile_input_and_changes_nothing(backend: Backend) {
    let (_env, world) = world(backend).await;
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", world.app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cases = cases(&world, &doc);
    assert!(
        cases.len() >= 1_000,
        "the corpus holds {} cases",
        cases.len()
    );
    let before = fingerprint(&world.app).await;
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let r = send(&world, case, n).await;
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = r.bytes().await.unwrap_or_default();
        let problem: Option<Value> = serde_json::from_slice(&body).ok();
        let mut wrong = Vec::new();
        if !(400..500).contains(&status) {
            wrong.push(format!("status {status}"));
        }
        if case.hidden && !matches!(status, 403 | 404) {
            wrong.push(format!("another principal's id answered {status}"));
        }
        if !content_type.starts_with("application/problem+json") {
            wrong.push(format!("content type {content_type:?}"));
        }
        match &problem {
            Some(p) if p["status"] == status && p["title"].is_string() => {}
            _ => wrong.push(format!(
                "not a problem: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
        }
        let after = fingerprint(&world.app).await;
        if after != before {
            wrong.push(format!("state changed: {before} → {after}"));
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}", case.label, wrong.join("; ")));
            if after != before {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    world.app.stop().await;
}

//! A typed client for the agency API, usable as is by an agency written in Rust (and by
//! `custodia demo`). It speaks only the public HTTP API described at
//! `/api/v1/openapi.json`; every refusal comes back as [`ClientError::Problem`] with the
//! server's RFC 9457 fields.
//!
//! ```no_run
//! # async fn run() -> Result<(), custodia::client::ClientError> {
//! use custodia::client::{AccessRequest, AgencyClient};
//! let agency = AgencyClient::new("http://127.0.0.1:8080", "cus_…")?
//!     .acting_as("officer-7", "CASE-2026-001");
//! let asked = agency
//!     .request_access(&AccessRequest {
//!         national_id: "110105198001010016".into(),
//!         document_types: vec!["business_license".into()],
//!         tier: "fields".into(),
//!         fields: vec!["company_name".into()],
//!         purpose_code: "business_registration".into(),
//!         purpose: "设立登记材料核验".into(),
//!         legal_basis: None,
//!         duration_days: 7,
//!         retention_days: 90,
//!     })
//!     .await?;
//! // … once the citizen approved:
//! let status = agency.request_status(asked.id).await?;
//! if let Some(grant) = status.grant_id {
//!     for doc in agency.documents(grant).await? {
//!         let read = agency.read(grant, doc.id, None).await?;
//!         println!("{}", read["fields"]);
//!     }
//! }
//! # Ok(()) }
//! ```

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What can go wrong talking to Custodia.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Custodia refused, with an RFC 9457 problem.
    #[error("{status} {title}: {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// The problem type (`/problems/<slug>`).
        kind: String,
        /// Its title.
        title: String,
        /// What happened.
        detail: String,
    },
    /// The file's bytes do not match the digest Custodia sent with them.
    #[error("the file does not match its digest")]
    DigestMismatch,
    /// The connection or the response failed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The base URL is not usable.
    #[error("bad base URL: {0}")]
    Url(String),
    /// The document to sign cannot be put in canonical form.
    #[error("cannot canonicalise the document: {0}")]
    Canonical(String),
}

/// An access request (`POST /api/v1/access-requests`).
#[derive(Debug, Clone, Serialize)]
pub struct AccessRequest {
    /// The citizen's national ID number.
    pub national_id: String,
    /// Types asked for.
    pub document_types: Vec<String>,
    /// `verify`, `fields` or `full`.
    pub tier: String,
    /// Fields (for `fields`).
    pub fields: Vec<String>,
    /// A purpose code from `/api/v1/catalog`.
    pub purpose_code: String,
    /// The purpose in words, shown to the citizen.
    pub purpose: String,
    /// Legal basis (required for conditional types).
    pub legal_basis: Option<String>,
    /// Wished duration in days.
    pub duration_days: i64,
    /// Days the agency keeps what it reads.
    pub retention_days: i32,
}

/// A request's state.
#[derive(Debug, Clone, Deserialize)]
pub struct RequestStatus {
    /// Id.
    pub id: Uuid,
    /// `pending`, `approved`, `denied` or `expired`.
    pub status: String,
    /// The grant, once approved.
    #[serde(default)]
    pub grant_id: Option<Uuid>,
}

/// A grant as the agency sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Grant {
    /// Id.
    pub id: Uuid,
    /// `verify`, `fields` or `full`.
    pub tier: String,
    /// Fields (for `fields`).
    pub fields: Vec<String>,
    /// Purpose.
    pub purpose: String,
    /// End of validity (RFC 3339).
    pub expires_at: String,
    /// Most reads, if limited.
    pub max_reads: Option<i32>,
    /// Reads so far.
    pub reads: i32,
    /// Days the agency may keep what it read.
    pub retention_days: i32,
    /// `active`, `revoked`, `expired` or `exhausted`.
    pub status: String,
    /// The request it answered.
    #[serde(default)]
    pub request_id: Option<Uuid>,
    /// Made by breaking the glass (an emergency grant).
    #[serde(default)]
    pub emergency: bool,
    /// Types covered.
    #[serde(default)]
    pub document_types: Vec<String>,
}

/// An emergency access: what [`AgencyClient::emergency_access`] sends (agencies
/// registered for emergencies; officer and case from [`AgencyClient::acting_as`], the same
/// case in `case`).
#[derive(Debug, Clone, Serialize)]
pub struct EmergencyAccess {
    /// The person's national ID.
    pub national_id: String,
    /// Types needed.
    pub document_types: Vec<String>,
    /// `verify`, `fields` or `full`.
    pub tier: String,
    /// For `fields`: which.
    pub fields: Vec<String>,
    /// Why this cannot wait for consent.
    pub justification: String,
    /// The law relied on.
    pub legal_basis: String,
    /// The case (as in `X-Case-Id`).
    pub case: String,
    /// 1 to 240.
    pub duration_minutes: i64,
    /// Days the person is not told, when the legal basis names such a delay (0–30).
    pub disclosure_delay_days: Option<i64>,
}

/// A document a grant covers.
#[derive(Debug, Clone, Deserialize)]
pub struct CoveredDocument {
    /// Id.
    pub id: Uuid,
    /// Type id.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Current version.
    pub version: i32,
}

/// The answer to an issuer deposit.
#[derive(Debug, Clone, Deserialize)]
pub struct DepositAccepted {
    /// The deposit's id.
    pub id: Uuid,
    /// `accepted`.
    pub status: String,
}

/// The agency API, authenticated with one API key, reading as one officer for one case.
#[derive(Debug, Clone)]
pub struct AgencyClient {
    base: String,
    key: String,
    officer: String,
    case: String,
    http: reqwest::Client,
}

impl AgencyClient {
    /// A client for the Custodia at `base` (for example `https://vault.example.gov`).
    pub fn new(base: &str, api_key: &str) -> Result<Self, ClientError> {
        let parsed = url::Url::parse(base).map_err(|e| ClientError::Url(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Url("use http:// or https://".into()));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: api_key.to_owned(),
            officer: String::new(),
            case: String::new(),
            http: reqwest::Client::builder()
                .user_agent(concat!(
                    "custodia-agency-client/",
                    env!("CARGO_PKG_VERSION")
                ))
                .build()?,
        })
    }

    /// Names the official and the case every read is recorded under.
    pub fn acting_as(mut self, officer: &str, case: &str) -> Self {
        self.officer = officer.to_owned();
        self.case = case.to_owned();
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if !self.officer.is_empty() {
            r = r
                .header("x-officer-id", &self.officer)
                .header("x-case-id", &self.case);
        }
        r
    }

    async fn ok(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let text = |k: &str| {
            body.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Err(ClientError::Problem {
            status,
            kind: text("type"),
            title: text("title"),
            detail: text("detail"),
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        Ok(Self::ok(builder.send().await?).await?.json().await?)
    }

    /// Issues a one-time enrolment code for a citizen identified in person (enrolling
    /// agencies only); returns the code.
    pub async fn enrolment_code(&self, national_id: &str) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct Issued {
            enrolment_code: String,
        }
        let issued: Issued = self
            .json(
                self.request(reqwest::Method::POST, "/api/v1/enrolment-codes")
                    .json(&serde_json::json!({ "national_id": national_id })),
            )
            .await?;
        Ok(issued.enrolment_code)
    }

    /// Asks a citizen for documents.
    pub async fn request_access(&self, req: &AccessRequest) -> Result<RequestStatus, ClientError> {
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/access-requests")
                .json(req),
        )
        .await
    }

    /// Breaks the glass: an emergency grant over what the person made emergency-available
    /// (`404` when nothing is, exactly as for a national ID nobody registered).
    pub async fn emergency_access(&self, req: &EmergencyAccess) -> Result<Grant, ClientError> {
        self.json(
            self.request(reqwest::Method::POST, "/api/v1/emergency-access")
                .json(req),
        )
        .await
    }

    /// A request's status.
    pub async fn request_status(&self, id: Uuid) -> Result<RequestStatus, ClientError> {
        self.json(self.request(
            reqwest::Method::GET,
            &format!("/api/v1/access-requests/{id}"),
        ))
        .await
    }

    /// Every grant of this agency, newest first (follows the cursor).
    pub async fn grants(&self) -> Result<Vec<Grant>, ClientError> {
        #[derive(Deserialize)]
        struct Page {
            grants: Vec<Grant>,
            next_cursor: Option<String>,
        }
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/grants?cursor={c}"),
                None => "/api/v1/grants".to_owned(),
            };
            let page: Page = self.json(self.request(reqwest::Method::GET, &path)).await?;
            out.extend(page.grants);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// One grant.
    pub async fn grant(&self, id: Uuid) -> Result<Grant, ClientError> {
        self.json(self.request(reqwest::Method::GET, &format!("/api/v1/grants/{id}")))
            .await
    }

    /// The documents a grant covers.
    pub async fn documents(&self, grant: Uuid) -> Result<Vec<CoveredDocument>, ClientError> {
        #[derive(Deserialize)]
        struct List {
            documents: Vec<CoveredDocument>,
        }
        let list: List = self
            .json(self.request(
                reqwest::Method::GET,
                &format!("/api/v1/grants/{grant}/documents"),
            ))
            .await?;
        Ok(list.documents)
    }

    /// Reads a document at the grant's tier (optionally fewer fields).
    pub async fn read(
        &self,
        grant: Uuid,
        document: Uuid,
        fields: Option<&[&str]>,
    ) -> Result<serde_json::Value, ClientError> {
        let mut path = format!("/api/v1/grants/{grant}/documents/{document}");
        if let Some(f) = fields {
            path.push_str(&format!("?fields={}", f.join(",")));
        }
        self.json(self.request(reqwest::Method::GET, &path)).await
    }

    /// Downloads a document's file (full tier) and checks it against `Repr-Digest`.
    pub async fn read_file(&self, grant: Uuid, document: Uuid) -> Result<Vec<u8>, ClientError> {
        let response = Self::ok(
            self.request(
                reqwest::Method::GET,
                &format!("/api/v1/grants/{grant}/documents/{document}/file"),
            )
            .send()
            .await?,
        )
        .await?;
        let expected = response
            .headers()
            .get("repr-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha-256=:"))
            .and_then(|v| v.strip_suffix(':'))
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok());
        let bytes = response.bytes().await?.to_vec();
        match expected {
            Some(d) if d == custodia_crypto::digest::sha256(&bytes) => Ok(bytes),
            _ => Err(ClientError::DigestMismatch),
        }
    }

    /// Deposits a signed document (issuers). `signed` already carries `signature`; see
    /// [`sign_deposit`].
    pub async fn deposit(
        &self,
        signed: &serde_json::Value,
        file: Option<(&str, Vec<u8>)>,
    ) -> Result<DepositAccepted, ClientError> {
        let builder = self.request(reqwest::Method::POST, "/api/v1/issued-documents");
        let builder = match file {
            None => builder.json(signed),
            Some((name, bytes)) => builder.multipart(
                reqwest::multipart::Form::new()
                    .text("document", signed.to_string())
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
                    ),
            ),
        };
        self.json(builder).await
    }
}

/// Signs a deposit as an issuer: Ed25519 over the RFC 8785 canonical JSON of `document`
/// (which must not contain `signature`), added as base64url `signature`.
pub fn sign_deposit(
    issuer: &custodia_crypto::sign::SigningKey,
    mut document: serde_json::Value,
) -> Result<serde_json::Value, ClientError> {
    let canonical = custodia_crypto::digest::canonical_json(&document)
        .map_err(|e| ClientError::Canonical(e.to_string()))?;
    let signature = issuer.sign_raw(canonical.as_bytes());
    document
        .as_object_mut()
        .ok_or_else(|| ClientError::Canonical("the document must be a JSON object".into()))?
        .insert(
            "signature".into(),
            serde_json::Value::String(
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature),
            ),
        );
    Ok(document)
}

/// How far a webhook's timestamp may be from the receiver's clock (seconds).
pub const WEBHOOK_TOLERANCE_S: i64 = 300;

/// Why a webhook request was refused by [`verify_webhook`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookRefused {
    /// The timestamp header is not a number.
    #[error("Custodia-Webhook-Timestamp is not a Unix time")]
    Timestamp,
    /// The timestamp is more than [`WEBHOOK_TOLERANCE_S`] from now: a replay, or a clock
    /// far off.
    #[error("the webhook's timestamp is more than five minutes from now")]
    Stale,
    /// The signature does not verify under the key.
    #[error("the webhook's signature does not verify")]
    Signature,
}

/// Checks a webhook from Custodia: the `Custodia-Webhook-Timestamp` and
/// `Custodia-Webhook-Signature` headers over the body as received, with the service's
/// public key (pinned: `GET /api/v1/audit/public-key`, chosen by `Custodia-Webhook-Key-Id`)
/// at `now_s` (Unix seconds). The receiver should also drop a `Custodia-Webhook-Id` it has
/// already handled: deliveries are at least once.
pub fn verify_webhook(
    key: &custodia_crypto::sign::VerifyingKey,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_s: i64,
) -> Result<(), WebhookRefused> {
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookRefused::Timestamp)?;
    if (now_s - at).abs() > WEBHOOK_TOLERANCE_S {
        return Err(WebhookRefused::Stale);
    }
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature.trim())
        .map_err(|_| WebhookRefused::Signature)?;
    let mut message = format!("{at}.").into_bytes();
    message.extend_from_slice(body);
    key.verify(custodia_crypto::sign::CONTEXT_WEBHOOK, &message, &signature)
        .map_err(|_| WebhookRefused::Signature)
}

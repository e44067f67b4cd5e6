//! An agency driven through the real HTTP API with its bearer key.

use custodia::agencies::{self, Level, NewAgency};
use serde_json::{Value, json};

use crate::helpers::TestApp;

#[derive(Clone)]
pub struct Agency {
    pub id: String,
    pub key: String,
    pub base: String,
    pub http: reqwest::Client,
}

impl Agency {
    /// Creates an agency through the domain (what `custodia agency create` does).
    pub async fn create(app: &TestApp, name: &str, level: Level) -> Self {
        Self::create_with(app, name, level, None).await
    }

    /// Creates an issuer with this base64url Ed25519 public key.
    pub async fn create_with(
        app: &TestApp,
        name: &str,
        level: Level,
        issuer_key: Option<&str>,
    ) -> Self {
        // An issuer here may deposit every type of the catalog; tests of the bound name
        // their own.
        let issuer_types: Vec<String> = match issuer_key {
            Some(_) => app
                .state
                .catalog
                .document_types()
                .iter()
                .map(|t| t.id.clone())
                .collect(),
            None => Vec::new(),
        };
        Self::create_as(
            app,
            &NewAgency {
                name,
                level,
                issuer: issuer_key.is_some(),
                issuer_key,
                issuer_types: &issuer_types,
                enroller: false,
                guardianship_authority: false,
                emergency: false,
            },
        )
        .await
    }

    /// Creates the agency `new` describes, as `custodia agency create` does.
    pub async fn create_as(app: &TestApp, new: &NewAgency<'_>) -> Self {
        let created = agencies::create(&app.state, new).await.unwrap();
        Self {
            id: created.id.to_string(),
            key: created.api_key.to_string(),
            base: app.base.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// An issuing agency with a fresh Ed25519 key; returns it with the key it signs with.
    pub async fn issuer(app: &TestApp, name: &str) -> (Self, custodia_crypto::sign::SigningKey) {
        use base64::Engine as _;
        let key = custodia_crypto::sign::SigningKey::generate();
        let public =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes());
        let agency = Self::create_with(app, name, Level::Provincial, Some(&public)).await;
        (agency, key)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// A read with officer and case headers, to send as it is or with more headers.
    pub fn reading(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
            .header("x-officer-id", "officer-7")
            .header("x-case-id", "CASE-2026-001")
    }

    /// A read with officer and case headers.
    pub async fn read(&self, path: &str) -> reqwest::Response {
        self.reading(path).send().await.unwrap()
    }

    /// A DELETE with no officer headers.
    #[allow(dead_code)]
    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::DELETE, path)
            .send()
            .await
            .unwrap()
    }

    /// A GET with no officer headers.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .header("x-officer-id", "officer-7")
            .header("x-case-id", "CASE-2026-001")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Asks a citizen for business licences at `tier`.
    pub async fn ask(&self, national_id: &str, tier: &str, fields: &[&str]) -> reqwest::Response {
        self.post(
            "/api/v1/access-requests",
            json!({
                "national_id": national_id,
                "document_types": ["business_license"],
                "tier": tier,
                "fields": fields,
                "purpose_code": "business_registration",
                "purpose": "设立登记材料核验",
                "duration_days": 30,
                "retention_days": 90,
            }),
        )
        .await
    }
}

//! The national eID: an OpenID Connect relying party for `CUSTODIA_REGISTRATION=oidc`.
//!
//! The authorization code flow with PKCE (S256), a `state` bound to the browser by a
//! cookie and a `nonce` bound to the flow. The ID token comes straight from the provider's
//! token endpoint (client authentication with `CUSTODIA_OIDC_CLIENT_SECRET` when set) and
//! is accepted only with a valid signature by a key of the provider's published key set,
//! the configured issuer, this client as audience (and `azp` when there are several),
//! an unexpired lifetime and the flow's nonce. Only then is the national ID read from the
//! configured claim (`CUSTODIA_OIDC_NATIONAL_ID_CLAIM`, default `sub`).
//!
//! This module speaks the protocol and nothing else: what a proven identity may do is
//! decided by the citizens module (`citizens::eid`). Provider metadata and keys are
//! fetched on first use and kept for [`METADATA_TTL`]; an ID token signed by a key not in
//! the kept set fetches the set once more (the provider rotated its keys).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthenticationFlow, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, StandardErrorResponse,
    StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use url::Url;
use zeroize::Zeroizing;

use crate::config::OidcSettings;

/// How long discovered provider metadata and keys are kept.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);

/// Time allowed for one call to the provider.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Every claim of the ID token beyond the standard ones, by name.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EidClaims(HashMap<String, serde_json::Value>);
impl AdditionalClaims for EidClaims {}

type EidTokenResponse = StandardTokenResponse<
    IdTokenFields<
        EidClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type EidClient = Client<
    EidClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    EidTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why an eID sign-in did not prove an identity.
#[derive(Debug, thiserror::Error)]
pub enum EidError {
    /// The provider could not be reached or answered something unusable.
    #[error("the national eID service is not available: {0}")]
    Unavailable(String),
    /// The provider refused the sign-in (the citizen cancelled, or it failed there).
    #[error("the national eID sign-in was refused: {0}")]
    Refused(String),
    /// What came back did not prove anything: a bad signature, another issuer or
    /// audience, an expired token, a nonce of another flow, no usable national ID.
    #[error("the national eID answer could not be verified: {0}")]
    Invalid(String),
}

/// The secrets of one flow, kept (sealed) on the server between start and callback.
#[derive(Serialize, Deserialize)]
pub struct FlowSecrets {
    /// The `state` sent to the provider, which must come back with the code.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier whose S256 challenge went with the request.
    pub pkce_verifier: String,
}

/// What the callback carries, as the provider sent it.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state sent with the request.
    pub state: Option<String>,
    /// The issuer, when the provider names it (RFC 9207): must be the configured one.
    pub iss: Option<String>,
    /// An error code instead of a code (`access_denied`, …).
    pub error: Option<String>,
    /// The provider's words about the error.
    pub error_description: Option<String>,
}

/// The relying party for one configured provider.
pub struct Eid {
    settings: OidcSettings,
    redirect: RedirectUrl,
    http: openidconnect::reqwest::Client,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

impl Eid {
    /// A relying party whose callback is `public_url` + `/auth/oidc/callback`.
    pub fn new(settings: OidcSettings, public_url: &Url) -> anyhow::Result<Self> {
        let redirect = RedirectUrl::new(public_url.join("/auth/oidc/callback")?.to_string())?;
        let http = openidconnect::reqwest::Client::builder()
            // A provider's redirect is never followed: discovery and the token call go
            // exactly where the configuration and its metadata say.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(CALL_TIMEOUT)
            .build()?;
        Ok(Self {
            settings,
            redirect,
            http,
            metadata: Mutex::new(None),
        })
    }

    /// The callback address registered with the provider.
    pub fn redirect_url(&self) -> &str {
        self.redirect.as_str()
    }

    fn kept(&self) -> Option<CoreProviderMetadata> {
        // A poisoned lock only means a panic elsewhere while swapping the cache; the
        // value is whole either way.
        let guard = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < METADATA_TTL)
            .map(|(_, m)| m.clone())
    }

    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, EidError> {
        if !refresh && let Some(kept) = self.kept() {
            return Ok(kept);
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| EidError::Unavailable(format!("the issuer URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| EidError::Unavailable(error_chain(&e)))?;
        let mut guard = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> EidClient {
        EidClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            self.settings
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Where to send the browser, and the secrets the callback will be checked against.
    pub async fn authorize(&self) -> Result<(Url, FlowSecrets), EidError> {
        let client = self.client(self.metadata(false).await?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url,
            FlowSecrets {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    /// Checks the callback against the flow's secrets, redeems the code and verifies the
    /// ID token; returns the value of the national-ID claim, not yet validated as a number.
    ///
    /// `now_ms` is the time the token's lifetime is checked against.
    pub async fn redeem(
        &self,
        callback: &Callback,
        secrets: &FlowSecrets,
        now_ms: i64,
    ) -> Result<Zeroizing<String>, EidError> {
        if let Some(error) = &callback.error {
            return Err(EidError::Refused(match &callback.error_description {
                Some(words) => format!("{error}: {}", truncate(words)),
                None => error.clone(),
            }));
        }
        let state = callback.state.as_deref().unwrap_or_default();
        if !custodia_crypto::ct_eq(state.as_bytes(), secrets.state.as_bytes()) {
            return Err(EidError::Invalid(
                "the state does not belong to this sign-in".into(),
            ));
        }
        if let Some(iss) = &callback.iss
            && !same_issuer(iss, &self.settings.issuer)
        {
            return Err(EidError::Invalid(format!(
                "the answer names another issuer ({})",
                truncate(iss)
            )));
        }
        let code = callback
            .code
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| EidError::Invalid("the answer carries no authorization code".into()))?;

        let client = self.client(self.metadata(false).await?);
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| EidError::Unavailable(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(secrets.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match &e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    EidError::Refused(format!("the token endpoint answered {}", r.error()))
                }
                other => EidError::Unavailable(error_chain(other)),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| EidError::Invalid("the token response carries no ID token".into()))?;
        let nonce = Nonce::new(secrets.nonce.clone());
        let now = move || chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();

        let claims = match id_token.claims(&client.id_token_verifier().set_time_fn(now), &nonce) {
            Ok(claims) => claims.clone(),
            // A key id the kept set does not know: the provider may have rotated its
            // keys. Fetch them once more and try again.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) => {
                let fresh = self.client(self.metadata(true).await?);
                id_token
                    .claims(&fresh.id_token_verifier().set_time_fn(now), &nonce)
                    .map_err(|e| EidError::Invalid(error_chain(&e)))?
                    .clone()
            }
            Err(e) => return Err(EidError::Invalid(error_chain(&e))),
        };
        let claim = &self.settings.national_id_claim;
        let value = if claim == "sub" {
            Some(claims.subject().as_str().to_owned())
        } else {
            claims
                .additional_claims()
                .0
                .get(claim)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        value.map(Zeroizing::new).ok_or_else(|| {
            EidError::Invalid(format!(
                "the ID token has no `{claim}` claim with a national ID number \
                 (CUSTODIA_OIDC_NATIONAL_ID_CLAIM)"
            ))
        })
    }
}

/// The issuer a callback names (RFC 9207) is the configured one, give or take a
/// trailing slash.
fn same_issuer(named: &str, configured: &str) -> bool {
    named.trim_end_matches('/') == configured.trim_end_matches('/')
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_compare_without_a_trailing_slash() {
        let configured = "https://eid.example/";
        assert!(same_issuer("https://eid.example", configured));
        assert!(same_issuer("https://eid.example/", configured));
        assert!(!same_issuer("https://eid.example.evil", configured));
        assert!(!same_issuer("http://eid.example", configured));
    }
}

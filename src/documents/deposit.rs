//! Issuer deposits (`POST /api/v1/issued-documents`): an issuing agency sends a signed
//! document for a citizen, addressed by national ID, while the citizen is away.
//!
//! The issuer signs the RFC 8785 canonical JSON of the object without `signature` with its
//! Ed25519 key, registered with `custodia agency create --issuer --issuer-key` or
//! `set-issuer-key`. A deposit whose signature does not hold is refused (and recorded).
//! The document is encrypted like any other, but its data key is sealed to the citizen's
//! public key (HPKE) instead of wrapped under their vault key; the citizen receives it at
//! their next unlock. What the issuer signed, the signature and the issuer's key travel
//! sealed with the fields, so every later `verify` read re-checks the signature.
//!
//! An unregistered national ID gets the same answer as a registered one (the API is no
//! oracle for who is registered): the deposit is checked, encrypted and written exactly as
//! for a registered ID — so a wrong digest, a file that is not a PDF or one too large is
//! refused alike, in about the same time — and then discarded, the refusal recorded in
//! the audit trail for auditors.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Draft, Issuance};
use crate::audit::{ActorKind, Event};
use crate::citizens::NationalId;
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::{AgencyId, DocumentId};
use crate::store::agencies::AgencyRow;

/// The signed part of a deposit, as the issuer sends it (without `signature`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    national_id: String,
    #[serde(rename = "type")]
    doc_type: String,
    fields: serde_json::Value,
    issued_at: String,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    file_sha256: Option<String>,
}

/// The answer to a deposit, the same whether or not the citizen is registered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The deposit's id.
    pub id: DocumentId,
    /// Always `accepted`.
    pub status: &'static str,
}

/// A deposit whose signature and shape have been checked, ready to receive its file.
pub struct Deposit {
    draft: Option<Draft>,
    /// Whether the national ID has an account (else the draft is a decoy).
    registered: bool,
    id: DocumentId,
    issuer: AgencyId,
    doc_type: String,
    fields: serde_json::Value,
    pseudonym: Option<String>,
    wants_file: bool,
    has_file: bool,
    request_id: Option<String>,
    /// The issuer's `Idempotency-Key`, with what this deposit signed.
    retry: Option<crate::agencies::Retry>,
    /// A retry of a deposit already taken: its file is read and dropped, and the first
    /// answer given.
    replayed: bool,
}

fn parse_time(field: &'static str, text: &str) -> Result<OffsetDateTime, Error> {
    crate::error::rfc3339_time(field, text)
}

/// Whether `agency` is registered to deposit documents of `doc_type`.
fn issues(agency: &AgencyRow, doc_type: &str) -> bool {
    agency.is_issuer
        && crate::store::json_list::<String>(&agency.issuer_types)
            .iter()
            .any(|t| t == doc_type)
}

/// The deposit id in an answer kept for an `Idempotency-Key`.
fn kept_id(body: &serde_json::Value) -> Result<DocumentId, Error> {
    body.get("id")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a kept deposit answer without an id")))
}

async fn record_refusal(
    ctx: &Context,
    issuer: &AgencyRow,
    request_id: Option<&str>,
    reason: &str,
) -> Result<(), Error> {
    ctx.audit
        .append(
            Event::new(
                ActorKind::Agency,
                Some(issuer.id.to_string()),
                crate::audit::Action::DocumentDeposit,
            )
            .outcome(crate::audit::Outcome::Refused)
            .detail(reason)
            .request(request_id),
        )
        .await
        .map(|_| ())
}

impl Deposit {
    /// Checks the issuer, the signature and the shape of `document` (the JSON object the
    /// issuer sent, `signature` included).
    pub async fn begin(
        ctx: &Context,
        issuer: &AgencyRow,
        document: serde_json::Value,
        request_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Self, Error> {
        let key = match (&issuer.is_issuer, &issuer.issuer_public_key) {
            (true, Some(key)) => key.clone(),
            _ => {
                record_refusal(ctx, issuer, request_id, "the agency is not an issuer").await?;
                return Err(Error::Forbidden(
                    "This agency is not registered as an issuer.".into(),
                ));
            }
        };
        let serde_json::Value::Object(mut object) = document else {
            return Err(invalid("document", "must be a JSON object"));
        };
        let signature =
            match object.remove("signature") {
                Some(serde_json::Value::String(s)) => URL_SAFE_NO_PAD
                    .decode(s.trim_end_matches('='))
                    .map_err(|_| invalid("signature", "must be base64url"))?,
                _ => return Err(invalid("signature", "is required (base64url Ed25519)")),
            };
        let unsigned = serde_json::Value::Object(object);
        let canonical = custodia_crypto::digest::canonical_json(&unsigned)
            .map_err(|_| invalid("document", "cannot be put in canonical form"))?;
        let holds = custodia_crypto::sign::VerifyingKey::from_bytes(&key)
            .and_then(|k| k.verify_raw(canonical.as_bytes(), &signature))
            .is_ok();
        if !holds {
            record_refusal(
                ctx,
                issuer,
                request_id,
                "the issuer signature does not verify",
            )
            .await?;
            return Err(invalid(
                "signature",
                "does not verify with the issuer's registered key over the RFC 8785 form of the document without 'signature'",
            ));
        }
        // A retry signs the same bytes; the key names them.
        let retry = idempotency_key.map(|key| crate::agencies::Retry {
            key: key.to_owned(),
            fingerprint: custodia_crypto::digest::sha256(
                &[canonical.as_bytes(), b"\n", &signature].concat(),
            )
            .to_vec(),
        });
        if let Some(r) = &retry
            && let Some((_, body)) = crate::agencies::replay(ctx, issuer.id, r).await?
        {
            return Self::replay_of(issuer, &body, request_id);
        }
        let signed: Signed = serde_json::from_value(unsigned)
            .map_err(|e| invalid("document", format!("has an unexpected shape: {e}")))?;
        let national_id = NationalId::parse(&signed.national_id)?;
        let spec = ctx.catalog.document_type(&signed.doc_type).ok_or_else(|| {
            invalid(
                "type",
                format!("'{}' is not a document type", signed.doc_type),
            )
        })?;
        if !issues(issuer, &signed.doc_type) {
            record_refusal(
                ctx,
                issuer,
                request_id,
                &format!("the issuer is not registered for {}", signed.doc_type),
            )
            .await?;
            return Err(Error::Forbidden(format!(
                "This issuer is not registered to deposit '{}' documents.",
                signed.doc_type
            )));
        }
        // Check the fields now, so a bad deposit is refused before any file is received.
        ctx.catalog.validate_fields(spec, &signed.fields)?;
        let issued = parse_time("issued_at", &signed.issued_at)?;
        if let Some(e) = &signed.expires_at
            && parse_time("expires_at", e)? <= issued
        {
            return Err(invalid("expires_at", "must be after issued_at"));
        }
        if let Some(sha) = &signed.file_sha256 {
            if !spec.has_file {
                return Err(invalid(
                    "file_sha256",
                    format!("a {} carries no file", spec.names.en),
                ));
            }
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("file_sha256", "must be 64 hexadecimal characters"));
            }
        }
        let index = crate::citizens::national_id_index(ctx, &national_id);
        let citizen = ctx.store.citizen_by_index(&index).await?;
        let issuance = Issuance {
            issuer_agency_id: issuer.id,
            issued_at: signed.issued_at.clone(),
            expires_at: signed.expires_at.clone(),
            signed: canonical,
            signature: URL_SAFE_NO_PAD.encode(&signature),
            issuer_public_key: URL_SAFE_NO_PAD.encode(&key),
        };
        let registered = citizen.is_some();
        let (mut draft, pseudonym) = match citizen {
            Some(c) => (
                Draft::deposit(c.id, &c.public_key, issuance)?,
                Some(c.pseudonym),
            ),
            None => (Draft::decoy(issuance)?, None),
        };
        if let Some(sha) = &signed.file_sha256 {
            draft.expect_file_sha256(sha);
        }
        Ok(Self {
            id: draft.id(),
            draft: Some(draft),
            registered,
            issuer: issuer.id,
            doc_type: signed.doc_type,
            fields: signed.fields,
            pseudonym,
            wants_file: signed.file_sha256.is_some(),
            has_file: false,
            request_id: request_id.map(str::to_owned),
            retry,
            replayed: false,
        })
    }

    /// A deposit already taken under the same key: the first answer, nothing stored.
    fn replay_of(
        issuer: &AgencyRow,
        body: &serde_json::Value,
        request_id: Option<&str>,
    ) -> Result<Self, Error> {
        let id = kept_id(body)?;
        Ok(Self {
            draft: None,
            registered: false,
            id,
            issuer: issuer.id,
            doc_type: String::new(),
            fields: serde_json::Value::Null,
            pseudonym: None,
            wants_file: true,
            has_file: true,
            request_id: request_id.map(str::to_owned),
            retry: None,
            replayed: true,
        })
    }

    /// Starts the file part.
    pub async fn begin_file(&mut self, ctx: &Context, filename: &str) -> Result<(), Error> {
        if self.replayed {
            return Ok(());
        }
        if !self.wants_file {
            return Err(invalid(
                "file_sha256",
                "is required when a file is attached",
            ));
        }
        self.has_file = true;
        match self.draft.as_mut() {
            Some(d) => d.begin_file(ctx, filename).await,
            None => Ok(()),
        }
    }

    /// Feeds file bytes (checked and encrypted alike for an unregistered citizen, then
    /// discarded at commit).
    pub async fn push_file(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match self.draft.as_mut() {
            Some(d) => d.push_file(bytes).await,
            None => Ok(()),
        }
    }

    /// Stores the deposit and records it.
    #[tracing::instrument(skip_all)]
    pub async fn commit(mut self, ctx: &Context) -> Result<Accepted, Error> {
        if self.replayed {
            return Ok(Accepted {
                id: self.id,
                status: "accepted",
            });
        }
        if self.wants_file && !self.has_file {
            if let Some(d) = self.draft.take() {
                d.abandon(ctx).await;
            }
            return Err(invalid(
                "file",
                "file_sha256 names a file, but none is attached",
            ));
        }
        let accepted = Accepted {
            id: self.id,
            status: "accepted",
        };
        let event = Event::new(
            ActorKind::Agency,
            Some(self.issuer.to_string()),
            crate::audit::Action::DocumentDeposit,
        )
        .request(self.request_id.as_deref());
        let mut draft = self
            .draft
            .take()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a deposit committed twice")))?;
        let answer = serde_json::json!({ "id": self.id, "status": "accepted" });
        if self.registered {
            // Staged in the deposit's own transaction: no deposit without its record, and
            // the answer a retry gets kept with both.
            draft.record_deposit(event.clone().citizen(self.pseudonym.as_deref()));
            if let Some(r) = &self.retry {
                draft.keep_answer(self.issuer, r.clone(), answer.to_string());
            }
        }
        let stored = match draft.commit(ctx, &self.doc_type, &self.fields).await {
            Ok(stored) => stored,
            // A retry with the same key committed meanwhile: its answer stands.
            Err(Error::Conflict(_)) if self.retry.is_some() => {
                return self.replayed_answer(ctx).await;
            }
            Err(e) => return Err(e),
        };
        if !self.registered {
            // Recorded (and the answer kept) as for a registered ID, in one transaction.
            let now = ctx.clock.now_ms();
            let mut tx = ctx.store.begin().await?;
            crate::audit::stage(
                &mut tx,
                event
                    .outcome(crate::audit::Outcome::Refused)
                    .detail("no citizen with this national ID"),
                now,
            )
            .await?;
            match &self.retry {
                Some(r) => {
                    if crate::agencies::keep_answer(ctx, tx, self.issuer, r, 202, &answer, now)
                        .await?
                        .is_some()
                    {
                        return self.replayed_answer(ctx).await;
                    }
                }
                None => tx.commit().await?,
            }
            ctx.audit.flush().await;
            return Ok(accepted);
        }
        tracing::info!(document = %stored.id, issuer = %self.issuer, "issuer deposit stored");
        Ok(accepted)
    }

    async fn replayed_answer(&self, ctx: &Context) -> Result<Accepted, Error> {
        let retry = self
            .retry
            .as_ref()
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a replay without a key")))?;
        let (_, body) = crate::agencies::replay(ctx, self.issuer, retry)
            .await?
            .ok_or_else(|| Error::Conflict("The deposit changed meanwhile; try again.".into()))?;
        let id = kept_id(&body)?;
        Ok(Accepted {
            id,
            status: "accepted",
        })
    }

    /// Abandons the deposit (bad input mid-stream).
    pub async fn abandon(mut self, ctx: &Context) {
        if let Some(d) = self.draft.take() {
            d.abandon(ctx).await;
        }
    }
}

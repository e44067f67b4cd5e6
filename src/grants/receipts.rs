//! A grant's consent receipt as the citizen downloads it: the signed record, the key that
//! signed it (pinned, so it verifies after rotations) and the proof that the grant's
//! creation is in the signed audit log.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::sign::CONTEXT_CONSENT_RECEIPT;
use serde::Serialize;

use crate::context::Context;
use crate::error::Error;
use crate::ids::GrantId;
use crate::sessions::Session;

/// A signed consent receipt, verifiable offline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// The receipt (its RFC 8785 canonical form is what was signed).
    #[schema(value_type = Object)]
    pub receipt: serde_json::Value,
    /// Ed25519 signature, base64url, over `"custodia-sig/1\0consent-receipt\0" ‖ canonical receipt`.
    pub signature: String,
    /// The public half of the key that signed it, base64url (pinned in the key directory,
    /// so a receipt keeps verifying after the signing key rotates).
    pub public_key: String,
    /// The id of the key that signed it (also inside the signed receipt).
    pub key_id: String,
    /// The signature's context label.
    pub context: &'static str,
    /// Proof that the grant's creation is in the signed audit log (absent until the next
    /// checkpoint covers it, within a minute).
    pub inclusion: Option<crate::transparency::InclusionProof>,
}

/// The receipt of one of the citizen's grants.
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn receipt(ctx: &Context, session: &Session, id: GrantId) -> Result<Receipt, Error> {
    let g = ctx.store.citizen_grant(session.citizen()?, id).await?;
    let value: serde_json::Value =
        serde_json::from_str(&g.receipt).map_err(|e| Error::Internal(e.into()))?;
    let key_id = value
        .get("signing_key_id")
        .and_then(|k| k.as_str())
        .unwrap_or(&ctx.keys.signing_key_id)
        .to_owned();
    let public = ctx
        .keys
        .pinned
        .iter()
        .find(|(id, _)| *id == key_id)
        .map(|(_, key)| key.to_bytes())
        .ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "receipt key {key_id} is not in the key directory"
            ))
        })?;
    let inclusion = match ctx.store.grant_created_seq(id).await? {
        Some(seq) => match crate::transparency::citizen_proof(ctx, session, seq).await {
            Ok(proof) => Some(proof),
            Err(Error::Conflict(_) | Error::NotFound) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    Ok(Receipt {
        receipt: value,
        signature: URL_SAFE_NO_PAD.encode(&g.receipt_signature),
        public_key: URL_SAFE_NO_PAD.encode(public),
        key_id,
        context: CONTEXT_CONSENT_RECEIPT,
        inclusion,
    })
}

//! Documents: typed materials, each stored once, encrypted, versioned (SPEC §2, G4, G5, G7).
//!
//! Every version has its own random data key, wrapped under the owner's vault key. The
//! fields (with the file's name, type, size and digest) are sealed as one envelope; the
//! file is a STREAM ciphertext in the blob store under a random name. Both carry
//! associated data binding document id, version and owner, so ciphertext moved to another
//! row or owner fails to open. Uploads stream through encryption: memory does not grow with
//! file size. Deletion destroys the keys (crypto-shredding) and removes the blobs.
//!
//! Upload order (G7): the blob name is recorded as pending, the file is written to a
//! temporary name and synced, renamed into place, and only then is the version committed in
//! the same transaction that clears the pending record. A crash at any point leaves either
//! no visible document, or a committed one; the sweeper removes what a crash left behind.
//!
//! The stages, one file each: [`media`] (what a file is), [`upload`] (drafts, streaming
//! encryption, commit), [`read`] (lists, views, opening a version), [`files`] (delivering
//! a file: ranges, revalidation), [`lifecycle`] (deletion, sweeping), [`deposit`] (issuer
//! deposits).

pub mod deposit;
pub mod files;
pub mod lifecycle;
pub mod media;
pub mod read;
pub mod upload;

pub use files::{Delivery, FileStream, Part};
pub use lifecycle::{accept, delete, sweep_orphans};
pub use media::{FileInfo, MediaType, sanitise_filename};
pub use read::{IssuerCheck, Summary, VersionInfo, View, count, get, list, open_file};
pub use upload::{Draft, FileUpload, Stored};

use std::collections::BTreeMap;

use custodia_crypto::digest;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::Error;
use crate::ids::AgencyId;
use base64::Engine as _;

/// How an issuer vouched for a deposited document: what it signed, with which key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issuance {
    /// The issuing agency.
    pub issuer_agency_id: AgencyId,
    /// When the issuer issued it (RFC 3339).
    pub issued_at: String,
    /// When it stops being valid (RFC 3339).
    pub expires_at: Option<String>,
    /// The RFC 8785 canonical JSON the issuer signed.
    pub signed: String,
    /// The Ed25519 signature (base64url).
    pub signature: String,
    /// The issuer's public key at deposit time (base64url).
    pub issuer_public_key: String,
}

impl Issuance {
    /// Whether the issuer's signature over the signed form holds.
    pub fn signature_holds(&self) -> bool {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (Ok(key), Ok(sig)) = (
            b64.decode(&self.issuer_public_key),
            b64.decode(&self.signature),
        ) else {
            return false;
        };
        custodia_crypto::sign::VerifyingKey::from_bytes(&key)
            .and_then(|k| k.verify_raw(self.signed.as_bytes(), &sig))
            .is_ok()
    }
}

/// How far a deposit's issuer signature can be trusted: `valid` (it holds under a key the
/// issuer had registered, not revoked for that time), `untrusted` (it holds, but under a
/// key revoked as compromised before the deposit arrived, or one never registered),
/// `invalid` (it does not hold).
pub async fn issuer_trust(
    ctx: &Context,
    issuance: &Issuance,
    received_at_ms: i64,
) -> Result<&'static str, Error> {
    if !issuance.signature_holds() {
        return Ok("invalid");
    }
    let Ok(key) =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&issuance.issuer_public_key)
    else {
        return Ok("invalid");
    };
    Ok(
        match ctx
            .store
            .issuer_key(issuance.issuer_agency_id, &key)
            .await?
        {
            Some(k)
                if k.compromised_from
                    .is_some_and(|from| received_at_ms >= from) =>
            {
                "untrusted"
            }
            Some(_) => "valid",
            None => "untrusted",
        },
    )
}

/// The sealed part of a version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) doc_type: String,
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) file: Option<FileInfo>,
    pub(crate) content_sha256: String,
    #[serde(default)]
    pub(crate) issuance: Option<Issuance>,
}

/// The SHA-256 digest of a version's canonical content (RFC 8785 JSON of type, fields and
/// file digest): what `verify` reads attest to.
pub fn content_digest(
    doc_type: &str,
    fields: &BTreeMap<String, String>,
    file_sha256: Option<&str>,
) -> Result<String, Error> {
    let value =
        serde_json::json!({ "type": doc_type, "fields": fields, "file_sha256": file_sha256 });
    let canonical = digest::canonical_json(&value).map_err(|e| Error::Internal(e.into()))?;
    Ok(digest::hex(&digest::sha256(canonical.as_bytes())))
}

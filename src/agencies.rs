//! Agencies: government bodies that ask for and read documents (consumers) or deposit
//! signed ones (issuers), each at a level of government.
//!
//! API keys are `cus_` followed by 256 random bits (base64url). Only SHA-256 of the key is
//! stored (the key is high-entropy, so no slow hash is needed) with an 8-character prefix
//! for recognising it in lists; a presented key is found by its hash and compared again
//! in constant time. The key is shown once, when it is made.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::sign::VerifyingKey;
use custodia_crypto::{SecretBytes, ct_eq, digest};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::audit::{ActorKind, Event};
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::AgencyId;
use crate::store::agencies::{AgencyKeyRow, AgencyRow};

/// Levels of government, ordered `county` < `municipal` < `provincial` < `national`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// County (县级).
    County,
    /// Municipal (市级).
    Municipal,
    /// Provincial (省级).
    Provincial,
    /// National (国家级).
    National,
}

impl Level {
    /// Parses `national`, `provincial`, `municipal` or `county`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.trim().to_ascii_lowercase().as_str() {
            "national" => Ok(Self::National),
            "provincial" => Ok(Self::Provincial),
            "municipal" => Ok(Self::Municipal),
            "county" => Ok(Self::County),
            _ => Err(invalid(
                "level",
                "must be national, provincial, municipal or county",
            )),
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::National => "national",
            Self::Provincial => "provincial",
            Self::Municipal => "municipal",
            Self::County => "county",
        }
    }
}

/// An agency's `Idempotency-Key` for one POST, with the fingerprint of what it sent
/// (SPEC §4: agency POSTs accept `Idempotency-Key`; a retry gets the first answer).
#[derive(Debug, Clone)]
pub struct Retry {
    /// The key (1–255 printable characters).
    pub key: String,
    /// SHA-256 of what the request asked (a retry must ask the same).
    pub fingerprint: Vec<u8>,
}

fn key_reused() -> Error {
    invalid(
        "Idempotency-Key",
        "was already used for a different request; use a new key for a new request",
    )
}

/// The first answer (status, body) kept for `retry`, if the key was used before; the key
/// used before for something else is refused.
pub async fn replay(
    ctx: &Context,
    agency: AgencyId,
    retry: &Retry,
) -> Result<Option<(u16, serde_json::Value)>, Error> {
    let Some((fingerprint, status, body)) = ctx.store.idempotent_answer(agency, &retry.key).await?
    else {
        return Ok(None);
    };
    if !ct_eq(&fingerprint, &retry.fingerprint) {
        return Err(key_reused());
    }
    Ok(Some((
        u16::try_from(status).unwrap_or(200),
        serde_json::from_str(&body).map_err(|e| Error::Internal(e.into()))?,
    )))
}

/// Keeps `body` as the answer to `retry` in `tx` — the change's own transaction — and
/// commits it. `Some(first answer)` when the same key committed meanwhile (a retry racing
/// the first try): then `tx` is dropped and nothing of this try stands.
pub async fn keep_answer(
    ctx: &Context,
    mut tx: crate::store::Tx,
    agency: AgencyId,
    retry: &Retry,
    status: u16,
    body: &serde_json::Value,
    now_ms: i64,
) -> Result<Option<(u16, serde_json::Value)>, Error> {
    match tx
        .insert_idempotent_answer(
            agency,
            &retry.key,
            &retry.fingerprint,
            i32::from(status),
            &body.to_string(),
            now_ms,
        )
        .await
    {
        Ok(()) => {
            tx.commit().await?;
            Ok(None)
        }
        Err(crate::store::StoreError::Conflict(_)) => {
            drop(tx);
            Ok(Some(
                replay(ctx, agency, retry).await?.ok_or_else(key_reused)?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// What `create` hands back once.
#[derive(Debug)]
pub struct Created {
    /// The agency's id.
    pub id: AgencyId,
    /// The API key, shown once.
    pub api_key: Zeroizing<String>,
}

/// A new agency.
#[derive(Debug)]
pub struct NewAgency<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its level of government.
    pub level: Level,
    /// Whether it deposits signed documents.
    pub issuer: bool,
    /// The issuer's Ed25519 public key (base64url), required for issuers.
    pub issuer_key: Option<&'a str>,
    /// The document types an issuer may deposit (catalog type ids). An issuer with none
    /// deposits nothing until the operator names them.
    pub issuer_types: &'a [String],
    /// Whether it issues enrolment codes to citizens it has identified in person.
    pub enroller: bool,
    /// Whether it declares guardianships (SPEC §6).
    pub guardianship_authority: bool,
    /// Whether it may break the glass (SPEC §6); only at [`EMERGENCY_MIN_LEVEL`] or above.
    pub emergency: bool,
}

/// Agencies below this level are never registered for emergency access.
pub const EMERGENCY_MIN_LEVEL: Level = Level::Provincial;

/// The SHA-256 by which an API key is stored and found.
pub fn key_hash(key: &str) -> Vec<u8> {
    digest::sha256(key.as_bytes()).to_vec()
}

fn new_key() -> Zeroizing<String> {
    Zeroizing::new(format!(
        "cus_{}",
        URL_SAFE_NO_PAD.encode(SecretBytes::random(32).expose())
    ))
}

/// Parses an issuer's Ed25519 public key given as base64url.
pub fn parse_issuer_key(text: &str) -> Result<Vec<u8>, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| invalid("issuer_key", "must be base64url"))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid("issuer_key", "must be a 32-byte Ed25519 public key"))?;
    Ok(bytes)
}

/// Checks a list of document types an issuer may deposit against the catalog; returns
/// it as stored (a sorted JSON list without repeats).
pub fn issuer_types_json(ctx: &Context, types: &[String]) -> Result<String, Error> {
    let mut set = std::collections::BTreeSet::new();
    for t in types.iter().flat_map(|t| t.split(',')).map(str::trim) {
        if t.is_empty() {
            continue;
        }
        if ctx.catalog.document_type(t).is_none() {
            return Err(invalid(
                "issuer_types",
                format!("'{t}' is not a document type of the catalog"),
            ));
        }
        set.insert(t.to_owned());
    }
    serde_json::to_string(&set).map_err(|e| Error::Internal(e.into()))
}

/// Creates an agency and its first API key.
#[tracing::instrument(skip_all)]
pub async fn create(ctx: &Context, new: &NewAgency<'_>) -> Result<Created, Error> {
    let name = crate::error::plain_text("name", new.name, 200)?;
    let issuer_public_key = match (new.issuer, new.issuer_key) {
        (true, Some(k)) => Some(parse_issuer_key(k)?),
        (true, None) => {
            return Err(invalid(
                "issuer_key",
                "an issuer needs its Ed25519 public key",
            ));
        }
        (false, Some(_)) => return Err(invalid("issuer_key", "only issuers have an issuer key")),
        (false, None) => None,
    };
    if !new.issuer && !new.issuer_types.is_empty() {
        return Err(invalid("issuer_types", "only issuers deposit documents"));
    }
    let issuer_types = issuer_types_json(ctx, new.issuer_types)?;
    if new.emergency && new.level < EMERGENCY_MIN_LEVEL {
        return Err(invalid(
            "emergency",
            format!(
                "only agencies at {} level or above may break the glass",
                EMERGENCY_MIN_LEVEL.as_str()
            ),
        ));
    }
    let now = ctx.clock.now_ms();
    let id = AgencyId::random();
    let api_key = new_key();
    let mut tx = ctx.store.begin().await?;
    tx.insert_agency(&AgencyRow {
        id,
        name: name.to_owned(),
        level: new.level.as_str().to_owned(),
        is_consumer: true,
        is_issuer: new.issuer,
        issuer_public_key: issuer_public_key.clone(),
        issuer_types: issuer_types.clone(),
        is_enroller: new.enroller,
        is_guardianship_authority: new.guardianship_authority,
        is_emergency: new.emergency,
        created_at: now,
        disabled_at: None,
    })
    .await?;
    tx.insert_agency_key(&AgencyKeyRow {
        id: Uuid::new_v4(),
        agency_id: id,
        prefix: api_key.chars().take(8).collect(),
        key_hash: key_hash(&api_key),
        created_at: now,
        expires_at: None,
    })
    .await?;
    if let Some(key) = &issuer_public_key {
        tx.set_issuer_key(id, key, now).await?;
    }
    crate::audit::stage(
        &mut tx,
        operator_event(crate::audit::Action::AgencyCreate, id).detail(format!(
            "level {}, {}{}",
            new.level.as_str(),
            if new.issuer {
                format!("issuer of {issuer_types}")
            } else {
                "issuer false".to_owned()
            },
            if new.emergency { ", emergency" } else { "" }
        )),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(agency = %id, level = new.level.as_str(), issuer = new.issuer, "agency created");
    Ok(Created { id, api_key })
}

fn operator_event(action: crate::audit::Action, agency: AgencyId) -> Event {
    Event::new(ActorKind::Operator, None, action).objects([agency.to_string()])
}

/// Issues a new API key for an agency. The old keys stop at once, or after `overlap`
/// (at most one day) so a running integration can switch without an outage.
#[tracing::instrument(skip_all, fields(agency = %agency))]
pub async fn rotate_key(
    ctx: &Context,
    agency: AgencyId,
    overlap: std::time::Duration,
) -> Result<Zeroizing<String>, Error> {
    if overlap > std::time::Duration::from_secs(86_400) {
        return Err(invalid("overlap", "must be at most one day"));
    }
    let row = ctx.store.agency(agency).await?;
    if row.disabled_at.is_some() {
        return Err(Error::Conflict("This agency is disabled.".into()));
    }
    let now = ctx.clock.now_ms();
    let until = now + i64::try_from(overlap.as_millis()).unwrap_or(0);
    let api_key = new_key();
    let mut tx = ctx.store.begin().await?;
    tx.expire_agency_keys(agency, until).await?;
    tx.insert_agency_key(&AgencyKeyRow {
        id: Uuid::new_v4(),
        agency_id: agency,
        prefix: api_key.chars().take(8).collect(),
        key_hash: key_hash(&api_key),
        created_at: now,
        expires_at: None,
    })
    .await?;
    crate::audit::stage(
        &mut tx,
        operator_event(crate::audit::Action::AgencyRotateKey, agency)
            .detail(format!("old keys end in {} s", overlap.as_secs())),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(agency = %agency, overlap_s = overlap.as_secs(), "agency key rotated");
    Ok(api_key)
}

/// Disables an agency: every key is refused at once, it leaves the directory, and no new
/// grant names it. Its grants stay on record.
#[tracing::instrument(skip_all, fields(agency = %agency))]
pub async fn disable(ctx: &Context, agency: AgencyId) -> Result<(), Error> {
    ctx.store.agency(agency).await?;
    let now = ctx.clock.now_ms();
    let mut grants = Vec::new();
    for (grant, citizen) in ctx.store.active_agency_grants(agency).await? {
        let pseudonym = ctx.store.citizen(citizen).await.ok().map(|c| c.pseudonym);
        grants.push((grant, pseudonym));
    }
    let mut tx = ctx.store.begin().await?;
    if !tx.disable_agency(agency, now).await? {
        return Err(Error::Conflict("This agency is already disabled.".into()));
    }
    tx.expire_agency_keys(agency, now).await?;
    crate::audit::stage(
        &mut tx,
        operator_event(crate::audit::Action::AgencyDisable, agency),
        now,
    )
    .await?;
    // Its grants end with it: a disabled agency holds no key to anyone's documents.
    let mut ended = 0;
    for (grant, pseudonym) in grants {
        if tx
            .end_grant(grant, None, crate::status::GrantStatus::Revoked, now)
            .await?
        {
            ended += 1;
            crate::audit::stage(
                &mut tx,
                Event::new(ActorKind::Operator, None, crate::audit::Action::GrantRevoke)
                    .citizen(pseudonym.as_deref())
                    .grant(Some(grant))
                    .objects([grant.to_string(), agency.to_string()])
                    .detail("the agency was disabled"),
                now,
            )
            .await?;
        }
    }
    tx.commit().await?;
    if ended > 0 {
        ctx.store.scrub().await;
    }
    ctx.audit.flush().await;
    tracing::info!(agency = %agency, grants_ended = ended, "agency disabled");
    Ok(())
}

/// Registers (or replaces) an agency's issuer key, making it an issuer. A replaced key
/// stays registered as retired: what it signed while current stays trusted.
#[tracing::instrument(skip_all, fields(agency = %agency))]
pub async fn set_issuer_key(ctx: &Context, agency: AgencyId, key: &str) -> Result<(), Error> {
    let key = parse_issuer_key(key)?;
    ctx.store.agency(agency).await?;
    let now = ctx.clock.now_ms();
    if let Some(k) = ctx.store.issuer_key(agency, &key).await?
        && k.revoked_at.is_some()
    {
        return Err(invalid(
            "issuer_key",
            "was revoked as compromised and cannot be registered again",
        ));
    }
    let mut tx = ctx.store.begin().await?;
    tx.set_issuer_key(agency, &key, now).await?;
    crate::audit::stage(
        &mut tx,
        operator_event(crate::audit::Action::AgencySetIssuerKey, agency)
            .detail(format!("key {}", crate::keyring::key_fingerprint(&key))),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(())
}

/// Sets the document types an issuer may deposit (replacing the list it had).
#[tracing::instrument(skip_all, fields(agency = %agency))]
pub async fn set_issuer_types(
    ctx: &Context,
    agency: AgencyId,
    types: &[String],
) -> Result<String, Error> {
    let row = ctx.store.agency(agency).await?;
    if !row.is_issuer {
        return Err(Error::Conflict(
            "This agency is not an issuer; register its key first (set-issuer-key).".into(),
        ));
    }
    let json = issuer_types_json(ctx, types)?;
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    tx.set_issuer_types(agency, &json).await?;
    crate::audit::stage(
        &mut tx,
        operator_event(crate::audit::Action::AgencySetIssuerTypes, agency)
            .detail(format!("types {json}")),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(json)
}

/// Revokes an issuer key as compromised since `compromised_from` (the current key unless
/// `key` names an earlier one). A current key signs no more deposits, and `verify` reads
/// report every deposit received under the key since that time as untrusted.
#[tracing::instrument(skip_all, fields(agency = %agency))]
pub async fn revoke_issuer_key(
    ctx: &Context,
    agency: AgencyId,
    key: Option<&str>,
    compromised_from: time::OffsetDateTime,
) -> Result<Vec<u8>, Error> {
    let row = ctx.store.agency(agency).await?;
    let key = match key {
        Some(k) => parse_issuer_key(k)?,
        None => row.issuer_public_key.clone().ok_or_else(|| {
            Error::Conflict("This agency has no current issuer key; name the key.".into())
        })?,
    };
    let now = ctx.clock.now_ms();
    let from = i64::try_from(compromised_from.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| invalid("compromised_since", "is out of range"))?;
    if from > now {
        return Err(invalid("compromised_since", "must not be in the future"));
    }
    let mut tx = ctx.store.begin().await?;
    if !tx.revoke_issuer_key(agency, &key, from, now).await? {
        return Err(Error::Conflict(
            "This key is not a registered issuer key of the agency, or is already revoked.".into(),
        ));
    }
    crate::audit::stage(
        &mut tx,
        operator_event(crate::audit::Action::AgencyRevokeIssuerKey, agency).detail(format!(
            "key {} compromised since {from} ms",
            crate::keyring::key_fingerprint(&key)
        )),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::warn!(agency = %agency, "issuer key revoked as compromised");
    Ok(key)
}

/// An agency as a citizen sees it when choosing whom to grant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Listed {
    /// Id.
    pub id: AgencyId,
    /// Name.
    pub name: String,
    /// Level of government.
    pub level: String,
}

/// The agencies a citizen may grant to.
#[tracing::instrument(skip_all)]
pub async fn directory(ctx: &Context) -> Result<Vec<Listed>, Error> {
    Ok(ctx
        .store
        .consumer_agencies()
        .await?
        .into_iter()
        .map(|a| Listed {
            id: a.id,
            name: a.name,
            level: a.level,
        })
        .collect())
}

/// The live agency an API key belongs to; every failure is the same `Unauthenticated`.
#[tracing::instrument(skip_all)]
pub async fn authenticate(ctx: &Context, presented: &str) -> Result<AgencyRow, Error> {
    let hash = presented_key_hash(presented)?;
    let key = ctx
        .store
        .agency_key_by_hash(&hash)
        .await?
        .ok_or_else(refused_key)?;
    let agency = ctx.store.agency(key.agency_id).await?;
    admit(ctx, &hash, &key.key_hash, key.expires_at, &agency)?;
    Ok(agency)
}

fn refused_key() -> Error {
    Error::Unauthenticated("The API key is not valid.".into())
}

/// The hash a presented API key is looked up by; what cannot be a key is refused without
/// a look-up.
pub fn presented_key_hash(presented: &str) -> Result<Vec<u8>, Error> {
    if !presented.starts_with("cus_") || presented.len() > 100 {
        return Err(refused_key());
    }
    Ok(key_hash(presented))
}

/// Admits a key found by its hash: the hashes equal in constant time, the key not past its
/// end (a rotated key's overlap), its agency not disabled. Checked on every request, from
/// what the database says now, so a rotation or a disable holds at once on every node.
pub fn admit(
    ctx: &Context,
    presented_hash: &[u8],
    stored_hash: &[u8],
    expires_at: Option<i64>,
    agency: &AgencyRow,
) -> Result<(), Error> {
    if !ct_eq(stored_hash, presented_hash)
        || expires_at.is_some_and(|t| t <= ctx.clock.now_ms())
        || agency.disabled_at.is_some()
    {
        return Err(refused_key());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_parse() {
        assert!(Level::National > Level::Provincial && Level::Municipal > Level::County);
        assert_eq!(Level::parse("Provincial").ok(), Some(Level::Provincial));
        assert!(Level::parse("galactic").is_err());
    }

    #[test]
    fn keys_are_prefixed_and_random() {
        let (a, b) = (new_key(), new_key());
        assert!(a.starts_with("cus_") && a.len() == 4 + 43);
        assert_ne!(*a, *b);
    }
}

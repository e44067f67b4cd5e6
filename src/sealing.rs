//! Which key opens what, and how keys follow consent: the rules that citizens, documents
//! and grants share, beneath all three (SPEC G5).
//!
//! * A version's data key is wrapped under its owner's vault key ([`unwrap_data_key`]) and,
//!   for each live grant that covers it, under that grant's key ([`wraps_for_new_version`]:
//!   which grants a new version joins).
//! * A grant key is wrapped under the grant-wrapping service key ([`grant_key_aad`]).
//! * The current version of a document whose type its owner made emergency-available is
//!   also wrapped under the emergency service key ([`emergency_wrap`]; SPEC §6).
//! * Issuer deposits arrive sealed to the citizen's public key, are received at the next
//!   unlock ([`pick_up_deposits`]) and join grants only once the citizen accepts them
//!   ([`accept_deposit`]).
//!
//! Every wrap carries associated data naming what it belongs to, so no wrap opens in
//! another place.

use custodia_crypto::hpke_seal;
use custodia_crypto::{
    Aad, DataKey, DelegationKey, GrantKey, SymmetricKey, VaultKey, envelope, wrap,
};

use crate::context::Context;
use crate::error::Error;
use crate::ids::{CitizenId, DelegationId, DocumentId, GrantId};
use crate::sessions::Session;
use crate::store::citizens::CitizenRow;
use crate::store::delegations::DelegationWrapRow;
use crate::store::emergencies::EmergencyWrapRow;
use crate::store::grants::GrantWrapRow;

/// The associated data of a document's sealed parts (`label` = `data-key`, `document-meta`
/// or `document-file`): document, version and owner, so nothing moves between rows.
pub fn document_aad(
    label: &'static str,
    document: DocumentId,
    version: i32,
    owner: CitizenId,
) -> Aad {
    Aad::new(label)
        .with("document", document.as_bytes())
        .with("version", version.to_be_bytes())
        .with("owner", owner.as_bytes())
}

/// Unwraps the data key of one version with the owner's vault key.
pub fn unwrap_data_key(
    vault_key: &VaultKey,
    wrapped: &[u8],
    document: DocumentId,
    version: i32,
    owner: CitizenId,
) -> Result<DataKey, Error> {
    wrap::unwrap_key(
        vault_key,
        wrapped,
        &document_aad("data-key", document, version, owner),
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("data key of {document} v{version}: {e}")))
}

/// The context of a grant key wrapped under the grant-wrapping service key.
pub fn grant_key_aad(grant: GrantId) -> Aad {
    Aad::new("grant-key").with("grant", grant.as_bytes())
}

/// The context of a data key wrapped under a grant key.
pub fn grant_data_key_aad(grant: GrantId, document: DocumentId, version: i32) -> Aad {
    Aad::new("grant-data-key")
        .with("grant", grant.as_bytes())
        .with("document", document.as_bytes())
        .with("version", version.to_be_bytes())
}

/// The context of a data key wrapped under the `emergency-wrap` service key.
pub fn emergency_data_key_aad(document: DocumentId, version: i32, owner: CitizenId) -> Aad {
    Aad::new("emergency-data-key")
        .with("document", document.as_bytes())
        .with("version", version.to_be_bytes())
        .with("owner", owner.as_bytes())
}

/// The wrap of a version's data key under the emergency service key. It is stored only
/// while its type is emergency-available to its owner
/// ([`Tx::insert_emergency_wrap`](crate::store::Tx::insert_emergency_wrap)), so every
/// accepted version is offered it: one key wrap, no query.
pub fn emergency_wrap(
    ctx: &Context,
    owner: CitizenId,
    document: DocumentId,
    doc_type: &str,
    version: i32,
    data_key: &DataKey,
) -> EmergencyWrapRow {
    EmergencyWrapRow {
        document_id: document,
        version,
        citizen_id: owner,
        doc_type: doc_type.to_owned(),
        wrapped_key: wrap::wrap_key(
            &ctx.keys.emergency_wrap,
            data_key,
            &emergency_data_key_aad(document, version, owner),
        ),
    }
}

/// Opens an emergency wrap with the emergency service key.
pub fn open_emergency_wrap(ctx: &Context, w: &EmergencyWrapRow) -> Result<DataKey, Error> {
    wrap::unwrap_key(
        &ctx.keys.emergency_wrap,
        &w.wrapped_key,
        &emergency_data_key_aad(w.document_id, w.version, w.citizen_id),
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("emergency key of {}: {e}", w.document_id)))
}

/// The context of a citizen's sealed X25519 private key.
pub fn secret_key_aad(citizen: CitizenId) -> Aad {
    Aad::new("citizen-secret-key").with("citizen", citizen.as_bytes())
}

/// Opens a citizen's X25519 private key with their vault key (to receive deposits).
pub fn open_secret_key(
    row: &CitizenRow,
    vault_key: &VaultKey,
) -> Result<hpke_seal::HpkeSecretKey, Error> {
    let bytes = envelope::open(vault_key, &secret_key_aad(row.id), &row.secret_key_enc)
        .map_err(|e| Error::Internal(anyhow::anyhow!("private key of a citizen: {e}")))?;
    hpke_seal::HpkeSecretKey::from_bytes(&bytes)
        .map_err(|e| Error::Internal(anyhow::anyhow!("private key of a citizen: {e}")))
}

/// Wraps a new version's data key for every live grant of its owner that covers it: grants
/// naming its type (documents added while the grant lives) and grants naming the document
/// (its new versions). The server can do this alone because grant keys are wrapped under a
/// service key; it never needs the vault key to extend a grant the citizen already gave.
#[tracing::instrument(skip_all, fields(citizen = %citizen, document = %document, version))]
pub async fn wraps_for_new_version(
    ctx: &Context,
    citizen: CitizenId,
    document: DocumentId,
    doc_type: &str,
    version: i32,
    data_key: &custodia_crypto::DataKey,
) -> Result<Vec<GrantWrapRow>, Error> {
    let now = ctx.clock.now_ms();
    let mut out = Vec::new();
    for g in ctx.store.citizen_grants(citizen).await? {
        if g.status.at(g.expires_at, now) != crate::status::GrantStatus::Active {
            continue;
        }
        let types: Vec<String> = crate::store::json_list(&g.document_types);
        let ids: Vec<DocumentId> = crate::store::json_list(&g.document_ids);
        if !types.iter().any(|t| t == doc_type) && !ids.contains(&document) {
            continue;
        }
        let Some(wrapped) = g.grant_key_wrap.as_deref() else {
            continue;
        };
        let grant_key: GrantKey =
            wrap::unwrap_key(&ctx.keys.grant_wrap, wrapped, &grant_key_aad(g.id))
                .map_err(|e| Error::Internal(anyhow::anyhow!("grant key of {}: {e}", g.id)))?;
        out.push(GrantWrapRow {
            grant_id: g.id,
            document_id: document,
            version,
            wrapped_key: wrap::wrap_key(
                &grant_key,
                data_key,
                &grant_data_key_aad(g.id, document, version),
            ),
        });
    }
    Ok(out)
}

/// Receives the citizen's waiting issuer deposits: each sealed data key is opened with
/// their private key and wrapped under their vault key. A received deposit joins no grant
/// until its owner accepts it ([`accept_deposit`]). Returns how many were received.
#[tracing::instrument(skip_all, fields(citizen = %citizen))]
pub async fn pick_up_deposits(
    ctx: &Context,
    citizen: CitizenId,
    vault_key: &VaultKey,
) -> Result<usize, Error> {
    let waiting = ctx.store.waiting_deposits(citizen).await?;
    if waiting.is_empty() {
        return Ok(0);
    }
    let row = ctx.store.citizen(citizen).await?;
    let secret = open_secret_key(&row, vault_key)?;
    let mut received = 0;
    for d in waiting {
        let key_aad = document_aad("data-key", d.document_id, d.version, citizen);
        let data_key: DataKey = hpke_seal::open_key(&secret, &key_aad, &d.sealed_deposit)
            .map_err(|e| Error::Internal(anyhow::anyhow!("deposit {}: {e}", d.document_id)))?;
        // An accepted one (a delegate's upload) joins grants and delegations now; a
        // deposit waits for its owner to accept it.
        let (grant_wraps, delegation_wraps) = if d.accepted_at.is_some() {
            (
                wraps_for_new_version(
                    ctx,
                    citizen,
                    d.document_id,
                    &d.doc_type,
                    d.version,
                    &data_key,
                )
                .await?,
                delegation_wraps_for_new_version(
                    ctx,
                    citizen,
                    vault_key,
                    d.document_id,
                    &d.doc_type,
                    d.version,
                    &data_key,
                )
                .await?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let now = ctx.clock.now_ms();
        let mut tx = ctx.store.begin().await?;
        if tx
            .receive_deposit(
                d.document_id,
                d.version,
                &wrap::wrap_key(vault_key, &data_key, &key_aad),
            )
            .await?
        {
            for w in &grant_wraps {
                tx.insert_grant_wrap_if_active(w).await?;
            }
            for w in &delegation_wraps {
                tx.insert_delegation_wrap(w).await?;
            }
            if d.accepted_at.is_some() {
                tx.insert_emergency_wrap(&emergency_wrap(
                    ctx,
                    citizen,
                    d.document_id,
                    &d.doc_type,
                    d.version,
                    &data_key,
                ))
                .await?;
            }
            crate::audit::stage(
                &mut tx,
                document_record(
                    &row.pseudonym,
                    crate::audit::Action::DocumentReceive,
                    d.document_id,
                    &d.doc_type,
                )
                .detail("received at unlock"),
                now,
            )
            .await?;
            received += 1;
        }
        tx.commit().await?;
    }
    tracing::info!(received, "issuer deposits received");
    if received > 0 {
        ctx.audit.flush().await;
    }
    Ok(received)
}

/// The record of something the citizen (by pseudonym) did to one of her documents.
fn document_record(
    pseudonym: &str,
    action: crate::audit::Action,
    document: DocumentId,
    doc_type: &str,
) -> crate::audit::Event {
    crate::audit::Event::new(
        crate::audit::ActorKind::Citizen,
        Some(pseudonym.to_owned()),
        action,
    )
    .citizen(Some(pseudonym))
    .objects([document.to_string(), doc_type.to_owned()])
}

/// Accepts a received deposit: from now on it is one of the citizen's documents like any
/// other, and the live grants whose scope names its type get its key, in the same
/// transaction as the acceptance and its record. Accepting twice changes nothing.
#[tracing::instrument(skip_all, fields(citizen = %citizen, document = %document))]
pub async fn accept_deposit(
    ctx: &Context,
    citizen: CitizenId,
    vault_key: &VaultKey,
    document: DocumentId,
) -> Result<bool, Error> {
    pick_up_deposits(ctx, citizen, vault_key).await?;
    let row = ctx.store.citizen_document(citizen, document).await?;
    if row.accepted_at.is_some() {
        return Ok(false);
    }
    let versions = ctx.store.document_versions(document).await?;
    let current = versions
        .iter()
        .find(|v| v.version == row.current_version)
        .ok_or(Error::NotFound)?;
    let wrapped = current.data_key_wrap.as_deref().ok_or(Error::NotFound)?;
    let data_key = unwrap_data_key(vault_key, wrapped, document, current.version, citizen)?;
    let grant_wraps = wraps_for_new_version(
        ctx,
        citizen,
        document,
        &row.doc_type,
        current.version,
        &data_key,
    )
    .await?;
    let delegation_wraps = delegation_wraps_for_new_version(
        ctx,
        citizen,
        vault_key,
        document,
        &row.doc_type,
        current.version,
        &data_key,
    )
    .await?;
    let pseudonym = ctx.store.citizen(citizen).await?.pseudonym;
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    if !tx.accept_document(citizen, document, now).await? {
        return Ok(false);
    }
    for w in &grant_wraps {
        tx.insert_grant_wrap_if_active(w).await?;
    }
    for w in &delegation_wraps {
        tx.insert_delegation_wrap(w).await?;
    }
    tx.insert_emergency_wrap(&emergency_wrap(
        ctx,
        citizen,
        document,
        &row.doc_type,
        current.version,
        &data_key,
    ))
    .await?;
    crate::audit::stage(
        &mut tx,
        document_record(
            &pseudonym,
            crate::audit::Action::DocumentAccept,
            document,
            &row.doc_type,
        )
        .detail(format!("joined {} live grant(s)", grant_wraps.len())),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(grants = grant_wraps.len(), "deposit accepted");
    Ok(true)
}

/// HPKE `info` of national IDs sealed to the oversight office.
const NATIONAL_ID_INFO: &[u8] = b"custodia-national-id/1";

fn national_id_aad(citizen: CitizenId, key: uuid::Uuid) -> Vec<u8> {
    let mut aad = citizen.as_bytes().to_vec();
    aad.extend_from_slice(key.as_bytes());
    aad
}

/// Seals a citizen's national ID to the oversight office's public key `key`.
pub fn seal_national_id(
    public_key: &[u8],
    key: uuid::Uuid,
    citizen: CitizenId,
    national_id: &str,
) -> Result<Vec<u8>, Error> {
    let recipient = hpke_seal::HpkePublicKey::from_bytes(public_key)
        .map_err(|e| Error::Internal(anyhow::anyhow!("oversight public key: {e}")))?;
    hpke_seal::seal(
        &recipient,
        NATIONAL_ID_INFO,
        &national_id_aad(citizen, key),
        national_id.as_bytes(),
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("sealing a national ID: {e}")))
}

/// Opens a sealed national ID with the oversight office's private key (`None`: not
/// sealed to this key, or altered).
pub fn open_national_id(
    secret: &hpke_seal::HpkeSecretKey,
    key: uuid::Uuid,
    citizen: CitizenId,
    sealed: &[u8],
) -> Option<String> {
    let bytes = hpke_seal::open(
        secret,
        NATIONAL_ID_INFO,
        &national_id_aad(citizen, key),
        sealed,
    )
    .ok()?;
    String::from_utf8(bytes.to_vec()).ok()
}

// ---------------------------------------------------------------------------------------
// Delegations: keys follow a delegation as they follow a grant (SPEC §6, G5).
//
// A delegation key is random. It is sealed (HPKE) to the delegate's public key, so only her
// own vault opens it, and wrapped under the principal's vault key, so the principal's
// unlocked sessions can add the documents she stores later. The covered data keys are
// wrapped under it. The server alone can open none of these.

/// The context of a delegation key: sealed `to` the delegate, or wrapped for the principal.
pub fn delegation_key_aad(delegation: DelegationId, to: &'static str) -> Aad {
    Aad::new("delegation-key")
        .with("delegation", delegation.as_bytes())
        .with("to", to.as_bytes())
}

/// The context of a data key wrapped under a delegation key.
pub fn delegation_data_key_aad(
    delegation: DelegationId,
    document: DocumentId,
    version: i32,
) -> Aad {
    Aad::new("delegation-data-key")
        .with("delegation", delegation.as_bytes())
        .with("document", document.as_bytes())
        .with("version", version.to_be_bytes())
}

/// The context of one side's display name sealed to the other (`whose` = `principal` or
/// `delegate`).
pub fn delegation_name_aad(delegation: DelegationId, whose: &'static str) -> Aad {
    Aad::new("delegation-name")
        .with("delegation", delegation.as_bytes())
        .with("whose", whose.as_bytes())
}

/// Seals `name` to the citizen whose public key is `public_key` (a delegation's other side).
pub fn seal_name(public_key: &[u8], aad: &Aad, name: &str) -> Result<Vec<u8>, Error> {
    let recipient = hpke_seal::HpkePublicKey::from_bytes(public_key)
        .map_err(|e| Error::Internal(anyhow::anyhow!("public key of a citizen: {e}")))?;
    hpke_seal::seal_text(&recipient, aad, name)
        .map_err(|e| Error::Internal(anyhow::anyhow!("sealing a name: {e}")))
}

/// Opens a name sealed by [`seal_name`] with the recipient's private key.
pub fn open_name(secret: &hpke_seal::HpkeSecretKey, aad: &Aad, sealed: &[u8]) -> Option<String> {
    hpke_seal::open_text(secret, aad, sealed).ok()
}

/// What opens the data keys of the documents a request works on: the citizen's own vault
/// key, or — for a delegate acting for her principal — the delegation key, opened with the
/// delegate's own vault.
pub enum Opener {
    /// The owner's vault key.
    Vault {
        /// The key.
        key: VaultKey,
        /// The owner.
        owner: CitizenId,
    },
    /// A delegation's key.
    Delegation {
        /// The delegation.
        id: DelegationId,
        /// Its key.
        key: DelegationKey,
        /// The principal, who owns the documents.
        owner: CitizenId,
    },
}

impl Opener {
    /// The opener of `session`: `Locked` while the signed-in citizen's own vault is
    /// locked; `Conflict` for a delegation that has no keys yet (a guardianship before
    /// the ward's next unlock).
    pub async fn for_session(ctx: &Context, session: &Session) -> Result<Self, Error> {
        let Some(acting) = session.acting() else {
            return Ok(Self::Vault {
                key: session.vault_key()?,
                owner: session.citizen()?,
            });
        };
        let own_key = session.own_vault_key()?;
        let sealed = acting.key_for_delegate.as_deref().ok_or_else(|| {
            Error::Conflict(
                "The keys of this delegation arrive when the account holder next unlocks her vault."
                    .into(),
            )
        })?;
        let me = ctx.store.citizen(session.own_citizen()?).await?;
        let secret = open_secret_key(&me, &own_key)?;
        let key: DelegationKey = hpke_seal::open_key(
            &secret,
            &delegation_key_aad(acting.delegation, "delegate"),
            sealed,
        )
        .map_err(|e| Error::Internal(anyhow::anyhow!("delegation key: {e}")))?;
        Ok(Self::Delegation {
            id: acting.delegation,
            key,
            owner: acting.principal,
        })
    }

    /// Whose documents this opens.
    pub fn owner(&self) -> CitizenId {
        match self {
            Self::Vault { owner, .. } | Self::Delegation { owner, .. } => *owner,
        }
    }

    /// The data key of `version` of `document`; `vault_wrap` is the version's wrap under
    /// the owner's vault key. `NotFound` where this opener holds no key to it.
    pub async fn data_key(
        &self,
        ctx: &Context,
        document: DocumentId,
        version: i32,
        vault_wrap: Option<&[u8]>,
    ) -> Result<DataKey, Error> {
        match self {
            Self::Vault { key, owner } => {
                let wrapped = vault_wrap.ok_or(Error::NotFound)?;
                unwrap_data_key(key, wrapped, document, version, *owner)
            }
            Self::Delegation { id, key, .. } => {
                let wrapped = ctx
                    .store
                    .delegation_wrap(*id, document, version)
                    .await?
                    .ok_or(Error::NotFound)?;
                wrap::unwrap_key(
                    key,
                    &wrapped,
                    &delegation_data_key_aad(*id, document, version),
                )
                .map_err(|e| Error::Internal(anyhow::anyhow!("delegated key of {document}: {e}")))
            }
        }
    }
}

/// Wraps a new version's data key for every delegation of its owner that holds keys and
/// covers its type, with her vault key (which opens each delegation key). Also used when a
/// received document joins at unlock.
#[tracing::instrument(skip_all, fields(citizen = %citizen, document = %document, version))]
pub async fn delegation_wraps_for_new_version(
    ctx: &Context,
    citizen: CitizenId,
    vault_key: &VaultKey,
    document: DocumentId,
    doc_type: &str,
    version: i32,
    data_key: &DataKey,
) -> Result<Vec<DelegationWrapRow>, Error> {
    let mut out = Vec::new();
    for d in ctx
        .store
        .keyed_delegations(citizen, ctx.clock.now_ms())
        .await?
    {
        let types: Vec<String> = crate::store::json_list(&d.document_types);
        if !types.iter().any(|t| t == doc_type) {
            continue;
        }
        let Some(wrapped) = d.key_for_principal.as_deref() else {
            continue;
        };
        let key: DelegationKey =
            wrap::unwrap_key(vault_key, wrapped, &delegation_key_aad(d.id, "principal"))
                .map_err(|e| Error::Internal(anyhow::anyhow!("delegation key of {}: {e}", d.id)))?;
        out.push(DelegationWrapRow {
            delegation_id: d.id,
            document_id: document,
            version,
            wrapped_key: wrap::wrap_key(
                &key,
                data_key,
                &delegation_data_key_aad(d.id, document, version),
            ),
        });
    }
    Ok(out)
}

/// The keys of a delegation made now, with the principal's vault key: the delegation key
/// sealed to the delegate and wrapped for the principal, and a wrap of every version of
/// her documents (live, received) of the delegation's types.
pub struct DelegationKeys {
    /// Sealed to the delegate.
    pub for_delegate: Vec<u8>,
    /// Wrapped under the principal's vault key.
    pub for_principal: Vec<u8>,
    /// The covered data keys.
    pub wraps: Vec<DelegationWrapRow>,
}

/// Makes the keys of delegation `id` from `principal` (whose vault key is at hand) to the
/// citizen whose public key is `delegate_public_key`, covering `types`.
pub async fn delegation_keys(
    ctx: &Context,
    id: DelegationId,
    principal: CitizenId,
    vault_key: &VaultKey,
    delegate_public_key: &[u8],
    types: &[String],
) -> Result<DelegationKeys, Error> {
    let key = DelegationKey::generate();
    let recipient = hpke_seal::HpkePublicKey::from_bytes(delegate_public_key)
        .map_err(|e| Error::Internal(anyhow::anyhow!("public key of a citizen: {e}")))?;
    let for_delegate =
        hpke_seal::seal_key(&recipient, &delegation_key_aad(id, "delegate"), &key)
            .map_err(|e| Error::Internal(anyhow::anyhow!("sealing a delegation key: {e}")))?;
    let for_principal = wrap::wrap_key(vault_key, &key, &delegation_key_aad(id, "principal"));
    let mut wraps = Vec::new();
    for d in ctx.store.citizen_documents(principal).await? {
        if !types.contains(&d.doc_type) {
            continue;
        }
        for v in ctx.store.document_versions(d.id).await? {
            // A deposit not yet received has no vault wrap; it joins at pick-up.
            let Some(wrapped) = v.data_key_wrap.as_deref() else {
                continue;
            };
            let data_key = unwrap_data_key(vault_key, wrapped, d.id, v.version, principal)?;
            wraps.push(DelegationWrapRow {
                delegation_id: id,
                document_id: d.id,
                version: v.version,
                wrapped_key: wrap::wrap_key(
                    &key,
                    &data_key,
                    &delegation_data_key_aad(id, d.id, v.version),
                ),
            });
        }
    }
    Ok(DelegationKeys {
        for_delegate,
        for_principal,
        wraps,
    })
}

/// Gives keys to the principal's delegations that have none yet (a guardianship declared
/// while she was away), now that her vault key is at hand; `principal_name` is sealed to
/// each guardian. Returns how many were keyed.
#[tracing::instrument(skip_all, fields(citizen = %citizen))]
pub async fn key_waiting_delegations(
    ctx: &Context,
    citizen: CitizenId,
    vault_key: &VaultKey,
    principal_name: &str,
) -> Result<usize, Error> {
    let now = ctx.clock.now_ms();
    let waiting: Vec<_> = ctx
        .store
        .citizen_delegations(citizen)
        .await?
        .into_iter()
        .filter(|d| {
            d.principal_id == citizen
                && d.key_for_principal.is_none()
                && matches!(
                    d.status_at(now),
                    crate::status::DelegationStatus::Pending
                        | crate::status::DelegationStatus::Active
                )
        })
        .collect();
    let mut keyed = 0;
    for d in waiting {
        let delegate = ctx.store.citizen(d.delegate_id).await?;
        let types: Vec<String> = crate::store::json_list(&d.document_types);
        let keys =
            delegation_keys(ctx, d.id, citizen, vault_key, &delegate.public_key, &types).await?;
        let name = seal_name(
            &delegate.public_key,
            &delegation_name_aad(d.id, "principal"),
            principal_name,
        )?;
        let pseudonym = ctx.store.citizen(citizen).await?.pseudonym;
        let mut tx = ctx.store.begin().await?;
        if tx
            .key_delegation(d.id, &keys.for_delegate, &keys.for_principal, &name)
            .await?
        {
            for w in &keys.wraps {
                tx.insert_delegation_wrap(w).await?;
            }
            crate::audit::stage(
                &mut tx,
                crate::audit::by_citizen(&pseudonym, crate::audit::Action::DelegationKey)
                    .objects([d.id.to_string()])
                    .detail(format!("{} document version(s)", keys.wraps.len())),
                now,
            )
            .await?;
            keyed += 1;
        }
        tx.commit().await?;
    }
    if keyed > 0 {
        ctx.audit.flush().await;
    }
    Ok(keyed)
}

//! What an agency's read needs, in one statement: the hot path of the API.
//!
//! A read used to cost seven round trips (key, agency, grant, document, wrap, versions,
//! pseudonym), each a hand-off to the SQLite driver's thread or a network round trip to
//! PostgreSQL. Here one statement starts from the presented key's hash and joins the rest,
//! so whatever it finds is one consistent snapshot. It decides nothing: the domain
//! (`grants::reads`) judges the key, the grant's liveness and the cover from what it gets.
//!
//! A complete load (an enabled agency's key, its grant, a live document and the grant's
//! wrap of its current version) is kept for [`CACHE_TTL`] in a bounded map
//! ([`ReadCache`]), so an agency reading the same document again is not a database round
//! trip. A kept load is never the last word: every read's record claims the grant in the
//! audit batch with the same key, document and version
//! ([`crate::store::Tx::claim_grant_reads`]), so a revoke, an end, a key rotated away, a
//! disabled agency, a deleted or replaced document that committed before the batch stops
//! the read there, on every node — and the read is then tried afresh from the database.

use std::time::Duration;

use crate::ids::{AgencyId, CitizenId, DocumentId, GrantId};
use crate::on_engine;

use super::agencies::AgencyRow;
use super::documents::DocumentRow;
use super::grants::GrantRow;
use super::kept::Kept;
use super::{Store, StoreError};

/// The presented key, its agency, and the grant the request names if it is that agency's.
#[derive(Debug, Clone)]
pub struct ReadLoad {
    /// The agency the key belongs to.
    pub agency: AgencyRow,
    /// The stored hash of the key (compared again in constant time by the caller).
    pub key_hash: Vec<u8>,
    /// When the key stops working, if it does (a rotated key's overlap).
    pub key_expires_at: Option<i64>,
    /// The grant, if it exists and is this agency's.
    pub grant: Option<GrantLoad>,
    /// Whether this came from the cache rather than the database just now: its read's
    /// claim then answers "stale" instead of a refusal when what
    /// it says no longer holds, and the read is tried again afresh.
    pub cached: bool,
}

/// How long a complete load is kept (see the module's documentation).
pub const CACHE_TTL: Duration = Duration::from_secs(2);
/// How many loads are kept at most.
const CACHE_CAPACITY: usize = 4096;

/// Recent complete loads, by presented key hash, grant and document. Bounded in count and
/// age; emptied whenever this node destroys keys ([`Store::scrub`]).
pub(crate) type ReadCache = Kept<(Vec<u8>, GrantId, DocumentId), ReadLoad>;

/// An empty [`ReadCache`].
pub(crate) fn read_cache() -> ReadCache {
    Kept::new(CACHE_TTL, CACHE_CAPACITY, |_| 1)
}

/// What a read's claim holds true besides the grant being live: the key it was made with
/// is still the grant's agency's and working, the agency enabled, and the document still
/// the grant's citizen's, not deleted, at this version, with the grant's wrap of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadCover {
    /// The presented key's hash.
    pub key_hash: Vec<u8>,
    /// The document read.
    pub document: DocumentId,
    /// Its version read.
    pub version: i32,
}

impl ReadLoad {
    /// A load worth keeping: an enabled agency's key, its grant, a live document of the
    /// grant's citizen and the grant's wrap of the document's current version.
    fn complete(&self) -> bool {
        self.agency.disabled_at.is_none()
            && self
                .grant
                .as_ref()
                .and_then(|g| g.document.as_ref())
                .is_some_and(|d| d.wrapped_key.is_some() && d.meta_enc.is_some())
    }
}

/// A grant as loaded for a read.
#[derive(Debug, Clone)]
pub struct GrantLoad {
    /// The grant.
    pub grant: GrantRow,
    /// Its citizen's audit pseudonym.
    pub pseudonym: String,
    /// The document the request names, if it is a live document of the grant's citizen.
    pub document: Option<DocumentLoad>,
}

/// A live document of the grant's citizen, at its current version.
#[derive(Debug, Clone)]
pub struct DocumentLoad {
    /// The document.
    pub doc: DocumentRow,
    /// The current version's sealed contents.
    pub meta_enc: Option<Vec<u8>>,
    /// The current version's blob, if it has a file.
    pub blob_name: Option<String>,
    /// When the current version was stored.
    pub version_created_at: i64,
    /// The current version's data key under the grant's key, if the grant holds it.
    pub wrapped_key: Option<Vec<u8>>,
    /// The issuing agency's name, for deposited documents.
    pub issuer_name: Option<String>,
}

// Parameters in order of first appearance: $1 grant, $2 document, $3 key hash. Every join
// is by primary key or a unique column; the grant joins only if it is the key's agency's,
// the document only if it is the grant's citizen's and not deleted, the wrap only for the
// document's current version.
const SQL: &str = "SELECT \
    a.id AS a_id, a.name AS a_name, a.level AS a_level, a.is_consumer AS a_is_consumer, \
    a.is_issuer AS a_is_issuer, a.issuer_public_key AS a_issuer_public_key, \
    a.issuer_types AS a_issuer_types, a.is_enroller AS a_is_enroller, \
    a.is_guardianship_authority AS a_is_guardianship_authority, a.is_emergency AS a_is_emergency, \
    a.created_at AS a_created_at, a.disabled_at AS a_disabled_at, \
    k.key_hash AS k_key_hash, k.expires_at AS k_expires_at, \
    g.id, g.citizen_id, g.agency_id, g.request_id, g.document_ids, g.document_types, g.tier, \
    g.fields, g.purpose_code, g.purpose, g.legal_basis, g.valid_from, g.expires_at, g.max_reads, \
    g.reads, g.retention_days, g.status, g.status_changed_at, g.grant_key_wrap, g.receipt, \
    g.receipt_signature, g.created_at, g.emergency, \
    c.pseudonym AS c_pseudonym, \
    d.id AS d_id, d.citizen_id AS d_citizen_id, d.doc_type AS d_doc_type, \
    d.current_version AS d_current_version, d.issuer_agency_id AS d_issuer_agency_id, \
    d.created_at AS d_created_at, d.updated_at AS d_updated_at, d.accepted_at AS d_accepted_at, \
    v.meta_enc AS v_meta_enc, v.blob_name AS v_blob_name, v.created_at AS v_created_at, \
    w.wrapped_key AS w_wrapped_key, ia.name AS ia_name \
    FROM agency_keys k \
    JOIN agencies a ON a.id = k.agency_id \
    LEFT JOIN grants g ON g.id = $1 AND g.agency_id = a.id \
    LEFT JOIN citizens c ON c.id = g.citizen_id \
    LEFT JOIN documents d ON d.id = $2 AND d.citizen_id = g.citizen_id AND d.deleted_at IS NULL \
    LEFT JOIN document_versions v ON v.document_id = d.id AND v.version = d.current_version \
    LEFT JOIN grant_key_wraps w ON w.grant_id = g.id AND w.document_id = d.id \
        AND w.version = d.current_version \
    LEFT JOIN agencies ia ON ia.id = d.issuer_agency_id \
    WHERE k.key_hash = $3";

/// Decodes one row of [`SQL`] on either engine (expanded once per engine's row type).
macro_rules! decode_load {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let agency = AgencyRow {
            id: row.try_get("a_id")?,
            name: row.try_get("a_name")?,
            level: row.try_get("a_level")?,
            is_consumer: row.try_get("a_is_consumer")?,
            is_issuer: row.try_get("a_is_issuer")?,
            issuer_public_key: row.try_get("a_issuer_public_key")?,
            issuer_types: row.try_get("a_issuer_types")?,
            is_enroller: row.try_get("a_is_enroller")?,
            is_guardianship_authority: row.try_get("a_is_guardianship_authority")?,
            is_emergency: row.try_get("a_is_emergency")?,
            created_at: row.try_get("a_created_at")?,
            disabled_at: row.try_get("a_disabled_at")?,
        };
        let grant = match row.try_get::<Option<GrantId>, _>("id")? {
            None => None,
            Some(_) => {
                let document = match row.try_get::<Option<DocumentId>, _>("d_id")? {
                    None => None,
                    Some(id) => Some(DocumentLoad {
                        doc: DocumentRow {
                            id,
                            citizen_id: row.try_get::<CitizenId, _>("d_citizen_id")?,
                            doc_type: row.try_get("d_doc_type")?,
                            current_version: row.try_get("d_current_version")?,
                            issuer_agency_id: row
                                .try_get::<Option<AgencyId>, _>("d_issuer_agency_id")?,
                            created_at: row.try_get("d_created_at")?,
                            updated_at: row.try_get("d_updated_at")?,
                            accepted_at: row.try_get("d_accepted_at")?,
                        },
                        meta_enc: row.try_get("v_meta_enc")?,
                        blob_name: row.try_get("v_blob_name")?,
                        version_created_at: row
                            .try_get::<Option<i64>, _>("v_created_at")?
                            .unwrap_or_default(),
                        wrapped_key: row.try_get("w_wrapped_key")?,
                        issuer_name: row.try_get("ia_name")?,
                    }),
                };
                Some(GrantLoad {
                    grant: <GrantRow as sqlx::FromRow<_>>::from_row(row)?,
                    pseudonym: row.try_get("c_pseudonym")?,
                    document,
                })
            }
        };
        ReadLoad {
            agency,
            key_hash: row.try_get("k_key_hash")?,
            key_expires_at: row.try_get("k_expires_at")?,
            grant,
            cached: false,
        }
    }};
}

impl Store {
    /// Everything a read of `document` under `grant` needs, found from the presented key's
    /// hash in one statement; `None` when no key has that hash. With `fresh` false a
    /// complete load kept from the last [`CACHE_TTL`] may answer instead (marked `cached`).
    pub async fn read_load(
        &self,
        key_hash: &[u8],
        grant: GrantId,
        document: DocumentId,
        fresh: bool,
    ) -> Result<Option<ReadLoad>, StoreError> {
        let key = (key_hash.to_vec(), grant, document);
        if !fresh && let Some(mut kept) = self.read_cache.get(&key) {
            kept.cached = true;
            return Ok(Some(kept));
        }
        let loaded = on_engine!(self.pool(), p => {
            match sqlx::query(SQL)
                .bind(grant)
                .bind(document)
                .bind(key_hash)
                .fetch_optional(p)
                .await?
            {
                None => None,
                Some(row) => {
                    let decoded: Result<ReadLoad, sqlx::Error> = (|| Ok(decode_load!(&row)))();
                    Some(decoded?)
                }
            }
        });
        match loaded {
            Some(load) if load.complete() => {
                self.read_cache.put(key, load.clone());
                Ok(Some(load))
            }
            other => {
                self.read_cache.forget(&key);
                Ok(other)
            }
        }
    }
}

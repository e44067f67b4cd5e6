//! Storage: one interface over SQLite (embedded default) and PostgreSQL (beyond one
//! machine), chosen by the URL scheme at start, plus the blob store for encrypted files.
//!
//! Both engines run the same SQL text (`$1` placeholders, which SQLite accepts, used in
//! order of first appearance) against their own schema in `migrations/<engine>/`, whose
//! version numbers match. Portable representation: UUIDs (native in PostgreSQL, 16-byte
//! BLOBs in SQLite), times as i64 milliseconds since the epoch, ciphertext as bytes.
//!
//! This module owns connections, transactions and migrations. It must never hold
//! plaintext personal data longer than a query needs, and never decides policy.

pub mod agencies;
pub mod audit;
pub mod audit_tree;
pub mod auditors;
pub mod blob;
pub mod citizens;
pub mod cosignatures;
pub mod delegations;
pub mod documents;
pub mod emergencies;
pub mod enrolment;
pub mod grants;
mod kept;
pub mod oversight;
pub mod reads;
pub mod requests;
pub mod service_keys;
pub mod sessions;
pub mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::{Config, Engine};

/// Runs `$body` with `$conn` bound to the engine-specific pool or transaction connection.
/// The body is compiled once per engine, so each arm is fully typed.
#[macro_export]
macro_rules! on_engine {
    ($target:expr, $conn:ident => $body:expr) => {
        match $target {
            $crate::store::OnEngine::Sqlite($conn) => $body,
            $crate::store::OnEngine::Postgres($conn) => $body,
        }
    };
}

/// `rows` groups of `fields` placeholders for a multi-row `VALUES`: plain `?` on SQLite
/// (bound by position, no name look-ups), `$n` on PostgreSQL.
pub(crate) fn placeholders(sqlite: bool, rows: usize, fields: usize) -> String {
    let mut out = String::with_capacity(rows * fields * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for f in 0..fields {
            if f > 0 {
                out.push_str(", ");
            }
            if sqlite {
                out.push('?');
            } else {
                out.push('$');
                out.push_str(&(r * fields + f + 1).to_string());
            }
        }
        out.push(')');
    }
    out
}

/// A list stored as JSON text (document types, fields, ids): the portable representation
/// both engines share. Text that is not such a list reads as empty.
pub fn json_list<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A list as the JSON text it is stored as ([`json_list`] reads it back). Serialising a
/// list of strings, ids or names cannot fail; an empty list stands in if it ever did.
pub fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

/// A value that lives on one of the two engines: a pool, a transaction.
#[derive(Debug, Clone)]
pub enum OnEngine<S, P> {
    /// On SQLite.
    Sqlite(S),
    /// On PostgreSQL.
    Postgres(P),
}

/// A connection pool on either engine.
pub type Pool = OnEngine<SqlitePool, PgPool>;

/// An open transaction on either engine. Dropped without [`Tx::commit`], it rolls back.
pub type Tx =
    OnEngine<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Transaction<'static, sqlx::Postgres>>;

impl Tx {
    /// Commits the transaction (durably: SQLite runs with `synchronous=FULL`).
    pub async fn commit(self) -> Result<(), StoreError> {
        on_engine!(self, tx => tx.commit().await?);
        Ok(())
    }
}

/// What can go wrong in storage, in the terms the domain needs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness or foreign-key constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else (I/O, connection, corrupt row). Logged, never shown to clients.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db)
                if db.is_unique_violation() || db.is_foreign_key_violation() =>
            {
                Self::Conflict(db.message().to_owned())
            }
            _ => Self::Other(err.into()),
        }
    }
}

/// The database handle shared by every request.
#[derive(Debug, Clone)]
pub struct Store {
    pool: OnEngine<SqlitePool, PgPool>,
    /// Recent complete read loads ([`reads::ReadCache`]).
    read_cache: std::sync::Arc<reads::ReadCache>,
    /// The audit sequencer's own connection ([`Store::begin_audit`]): one writer that keeps
    /// its page cache and prepared statements warm, and never waits for a connection
    /// behind requests.
    audit: OnEngine<SqlitePool, PgPool>,
}

impl Store {
    /// Connects to the database the configuration names. For SQLite the file and its
    /// directory are created if missing, in WAL mode with foreign keys enforced, a busy
    /// timeout, `synchronous=FULL` so every commit is durable (SPEC G2, G7), and
    /// `secure_delete` so what a statement deletes or overwrites — a destroyed key wrap —
    /// is zeroed in the page rather than left in free space (see [`Store::scrub`]).
    pub async fn connect(config: &Config) -> Result<Self, StoreError> {
        let (pool, audit) = match config.engine {
            Engine::Sqlite => {
                let options = SqliteConnectOptions::from_str(&config.database_url)
                    .map_err(|e| StoreError::Other(e.into()))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .pragma("secure_delete", "ON")
                    .busy_timeout(Duration::from_secs(10));
                if let Some(dir) = options.get_filename().parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|e| StoreError::Other(e.into()))?;
                }
                let pool = |size| {
                    SqlitePoolOptions::new()
                        .max_connections(size)
                        // No ping before each use: a file does not go away under an open
                        // connection, and the ping is a hand-off to the driver's thread.
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(10))
                };
                // The sequencer's connection keeps its temporary storage (a batch's
                // statement journal) in memory: otherwise SQLite made, wrote and
                // deleted a file in /var/tmp for about one batch in six, copies of database
                // pages outside the data directory. A batch is bounded (`MAX_BATCH`), so
                // this is too; the other connections' temporary storage (a large sort) may
                // still spill to files.
                let audit_options = options.clone().pragma("temp_store", "MEMORY");
                // It also gets the view a batch is written through in one statement
                // (`Store::append_batch_at_once`).
                let audit_pool = pool(1)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            let sql = audit::sqlite_batch_trigger();
                            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                                .execute(conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(audit_options)
                    .await?;
                (
                    OnEngine::Sqlite(pool(8).connect_with(options).await?),
                    OnEngine::Sqlite(audit_pool),
                )
            }
            Engine::Postgres => {
                let options = PgConnectOptions::from_str(&config.database_url)
                    .map_err(|e| StoreError::Other(e.into()))?;
                let pool = |size| {
                    PgPoolOptions::new()
                        .max_connections(size)
                        // No ping before each use: it is a round trip of its own, doubling
                        // the cost of every one-statement request. A connection the
                        // server dropped fails its next statement (that request answers
                        // 503 and the connection is discarded); idle ones are recycled.
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(10))
                };
                (
                    OnEngine::Postgres(pool(16).connect_with(options.clone()).await?),
                    OnEngine::Postgres(pool(1).connect_with(options).await?),
                )
            }
        };
        Ok(Self {
            pool,
            read_cache: std::sync::Arc::new(reads::read_cache()),
            audit,
        })
    }

    /// Applies the embedded migrations of this engine; safe to run on every start and
    /// from several nodes at once (the migrator takes a lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            OnEngine::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
            OnEngine::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
        }
        .map_err(|e| StoreError::Other(e.into()))
    }

    /// Round-trips a trivial query: the database is reachable and answering.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_engine!(&self.pool, p => {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// After keys were destroyed (a grant ended, a document deleted or replaced, a vault
    /// key rotated): makes the destruction hold on disk as far as the engine allows. On
    /// SQLite the pages were already zeroed (`secure_delete`), but their earlier images
    /// stay in the write-ahead log until it is reset, so the log is checkpointed into the
    /// database and truncated to nothing. Best effort: a checkpoint that cannot finish now
    /// (readers still on old pages) is logged and happens at the next one.
    ///
    /// PostgreSQL keeps dead row versions until VACUUM and the WAL until it is recycled;
    /// `docs/THREAT_MODEL.md` says how operators bound that.
    pub async fn scrub(&self) {
        // Loads kept for reads hold key wraps: forgotten at once on this node (other nodes
        // forget theirs within `reads::CACHE_TTL`, and no read of an ended grant passes
        // its claim meanwhile).
        self.read_cache.clear();
        if let OnEngine::Sqlite(p) = &self.pool {
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(p)
                .await
            {
                Ok((0, _, _)) => {}
                Ok((_, log, done)) => {
                    tracing::warn!(
                        log,
                        done,
                        "write-ahead log not fully reset after a key destruction; it will be at the next checkpoint"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "write-ahead log checkpoint failed"),
            }
        }
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> Engine {
        match self.pool {
            OnEngine::Sqlite(_) => Engine::Sqlite,
            OnEngine::Postgres(_) => Engine::Postgres,
        }
    }

    /// The pool, for store submodules.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Writes a consistent copy of the SQLite database to `target` while it is in use
    /// (`VACUUM INTO`). Not available on PostgreSQL (use `pg_dump`).
    pub async fn sqlite_snapshot(&self, target: &std::path::Path) -> Result<(), StoreError> {
        match &self.pool {
            OnEngine::Sqlite(p) => {
                sqlx::query("VACUUM INTO $1")
                    .bind(target.display().to_string())
                    .execute(p)
                    .await?;
                Ok(())
            }
            OnEngine::Postgres(_) => Err(StoreError::Other(anyhow::anyhow!(
                "a PostgreSQL database is backed up with pg_dump"
            ))),
        }
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of failing
    /// when a read lock cannot be upgraded.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pool {
            OnEngine::Sqlite(p) => OnEngine::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            OnEngine::Postgres(p) => OnEngine::Postgres(p.begin().await?),
        })
    }

    /// A transaction for an audit batch, holding the trail's head: on SQLite `BEGIN
    /// IMMEDIATE` (the write lock), on PostgreSQL the head's row locked in the same round
    /// trip as `BEGIN` (two statements in one simple query), so the batch's next statement
    /// already sees every batch committed before it, on any node.
    pub async fn begin_audit(&self) -> Result<Tx, StoreError> {
        Ok(match &self.audit {
            OnEngine::Sqlite(p) => OnEngine::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            OnEngine::Postgres(p) => OnEngine::Postgres(
                p.begin_with("BEGIN; SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE")
                    .await?,
            ),
        })
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        on_engine!(&self.audit, p => p.close().await);
        on_engine!(&self.pool, p => p.close().await);
    }
}

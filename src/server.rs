//! Wiring: configuration → store (migrated) → blob store → keys → HTTP, and a graceful
//! shutdown on SIGTERM or Ctrl-C.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::audit::AuditLog;
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::context::{Context, KdfLimiter};
use crate::http::{self, AppState};
use crate::keyring::{KeyError, Keyring};
use crate::passkeys::Passkeys;
use crate::store::blob::BlobStore;
use crate::store::{Store, StoreError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The keys could not be loaded.
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    /// The catalog is not valid.
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The blob store or the listening socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// A server bound to its port, ready to run.
pub struct Server {
    listener: TcpListener,
    /// `CUSTODIA_METRICS_LISTEN`, bound.
    metrics_listener: Option<TcpListener>,
    state: AppState,
}

impl Server {
    /// Opens everything the configuration names, applies migrations and binds the
    /// listening socket (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Server::build`], with a chosen clock (tests move time).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let listen = config.listen;
        let context = open_context(config, clock).await?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Io {
                what: "listen",
                source,
            })?;
        let metrics_listener = match context.config.metrics_listen {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Io {
                        what: "metrics listen (CUSTODIA_METRICS_LISTEN)",
                        source,
                    })?,
            ),
        };
        Ok(Self {
            listener,
            metrics_listener,
            state: AppState(Arc::new(context)),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the metrics listener bound, if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The shared state (tests reach the store and keys through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and closes the
    /// database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let store = self.state.store.clone();
        let maintenance = tokio::spawn(maintain(self.state.0.clone()));
        let witnessing = tokio::spawn(crate::transparency::witnesses::run(self.state.0.clone()));
        let expiry = tokio::spawn(crate::grants::expire_on_time(self.state.0.clone()));
        let delegation_expiry =
            tokio::spawn(crate::delegations::expire_on_time(self.state.0.clone()));
        let webhooks = tokio::spawn(crate::webhooks::deliver_on_time(self.state.0.clone()));
        let metrics = self.metrics_listener.map(|listener| {
            let app = http::metrics_app(self.state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "metrics listener stopped");
                }
            })
        });
        let app = http::app(self.state);
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        maintenance.abort();
        witnessing.abort();
        expiry.abort();
        delegation_expiry.abort();
        webhooks.abort();
        if let Some(metrics) = &metrics {
            metrics.abort();
        }
        // The tasks were aborted; their cancellation results carry nothing to report.
        let _ = maintenance.await;
        let _ = witnessing.await;
        let _ = expiry.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        store.close().await;
        Ok(())
    }
}

/// Opens everything a Custodia process works with — data directory, migrated database,
/// blob store, keys, relying party, catalog — without listening. The server and the
/// operator commands share it.
pub async fn open_context(config: Config, clock: Arc<dyn Clock>) -> Result<Context, StartError> {
    create_private_dir(&config.data_dir).map_err(|source| StartError::Io {
        what: "data directory",
        source,
    })?;
    let store = Store::connect(&config).await?;
    store.migrate().await?;
    let blobs = BlobStore::open(&config.blob_store)
        .await
        .map_err(|source| StartError::Io {
            what: "blob store",
            source,
        })?;
    match blobs.sweep_tmp(Duration::from_secs(3600)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed interrupted uploads"),
        Err(e) => tracing::warn!(error = %e, "could not sweep interrupted uploads"),
    }
    let keys = Keyring::load(
        &store,
        &config.master_key_file,
        &config.signing_key_file(),
        clock.now_ms(),
    )
    .await?;
    let passkeys = Passkeys::new(&config.public_url).map_err(|e| StartError::Io {
        what: "WebAuthn relying party (CUSTODIA_PUBLIC_URL)",
        source: std::io::Error::other(e.to_string()),
    })?;
    let eid = match &config.oidc {
        None => None,
        Some(settings) => Some(
            crate::eid::Eid::new(settings.clone(), &config.public_url).map_err(|e| {
                StartError::Io {
                    what: "national eID relying party (CUSTODIA_OIDC_*)",
                    source: std::io::Error::other(e.to_string()),
                }
            })?,
        ),
    };
    let catalog = Catalog::load(config.catalog_file.as_deref())?;
    let kdf = KdfLimiter::new(config.argon2_concurrency, config.argon2);
    let signing = custodia_crypto::sign::SigningKey::from_seed(keys.signing.seed().as_slice())
        .map_err(|_| KeyError::Malformed(config.signing_key_file().display().to_string()))?;
    let audit = AuditLog::start(
        store.clone(),
        clock.clone(),
        crate::audit::LogSigner {
            key: signing,
            key_id: keys.signing_key_id.clone(),
            origin: config.audit_origin(),
            memory: Some(config.audit_memory_file()),
        },
    )
    .await?;
    Ok(Context {
        config,
        store,
        blobs,
        keys,
        clock,
        passkeys,
        kdf,
        catalog,
        audit,
        eid,
    })
}

/// Periodic clean-up every node runs: ended sessions, expired ceremonies, stale counters,
/// blobs of interrupted uploads. (Grants end on their own timer, `grants::expire_on_time`.)
async fn maintain(ctx: Arc<Context>) {
    let mut every = tokio::time::interval(Duration::from_secs(300));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = crate::sessions::sweep(&ctx).await {
            tracing::warn!(error = %e, "session sweep failed; will retry");
        }
        match crate::documents::sweep_orphans(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed blobs of interrupted uploads"),
            Err(e) => tracing::warn!(error = %e, "blob sweep failed; will retry"),
        }
    }
}

/// Creates the data directory readable by its owner only (0700), if it does not exist.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

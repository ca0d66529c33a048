//! Running a node: assemble it from its configuration, accept mTLS connections, serve the API, and on
//! SIGTERM/SIGINT stop accepting, finish in-flight requests, flush and return.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use keymgr::{KekSource, KeyManager};
use policies::PolicySet;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::ingress::{api, identity, tls};
use crate::ledger::{self, Ledger, LedgerConfig};
use crate::pipeline::Pipeline;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the key-usage index catches up with the ledger.
const USAGE_INDEX_EVERY: Duration = Duration::from_secs(1);

/// A node that could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The policies do not load.
    #[error("policies: {0}")]
    Policy(policies::PolicyErrors),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The KEK file.
    #[error("key-encryption key: {0}")]
    Kek(String),
    /// The key store.
    #[error("key store")]
    Keys(#[from] keymgr::Error),
    /// The ledger.
    #[error("ledger")]
    Ledger(#[from] ledger::LedgerError),
    /// The data directory has a vault database of an older layout.
    #[error("{0}")]
    OldLayout(String),
    /// Assembling the pipeline.
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// The listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn kek_source(config: &Config) -> Result<KekSource, ServeError> {
    match (&config.kek.passphrase_file, &config.kek.key_file) {
        (Some(p), _) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| ServeError::Kek(format!("{}: {e}", p.display())))?;
            Ok(KekSource::Passphrase(keymgr::Secret::new(
                text.trim_end().as_bytes().to_vec(),
            )))
        }
        (None, Some(f)) => Ok(KekSource::File(f.clone())),
        (None, None) => Err(ServeError::Kek("none configured".into())),
    }
}

/// The node's stores and pipeline, opened from `config` as `serve` opens them: the policy, the key
/// store (under the configured KEK), the ledger (signing with keymgr's checkpoint key, flushing the
/// key store before each group) and the pipeline over them. Refuses a data directory of the old layout.
pub fn open_pipeline(config: &Config) -> Result<(Arc<Pipeline>, Arc<Ledger>), ServeError> {
    let policy = Arc::new(PolicySet::load(&config.policies).map_err(ServeError::Policy)?);
    let keys = Arc::new(KeyManager::open(
        &config.data.join("keys"),
        &kek_source(config)?,
    )?);
    let now = crate::keys::unix_now();
    let signer = crate::init::checkpoint_signer(&keys, &config.ledger.origin, now)
        .map_err(|e| ServeError::Kek(e.to_string()))?;
    let ledger = Arc::new(Ledger::open(
        LedgerConfig::new(ledger::store_dir(&config.data), &config.ledger.origin),
        Arc::new(signer),
    )?);
    let old_vault = config.data.join("vault");
    if old_vault.exists() {
        // Made by a gateway before the vault moved beside the ledger; nothing reads it any more.
        return Err(ServeError::OldLayout(format!(
            "{}: a vault database of an older layout (the vault is now kept in the ledger store) \
             that this build cannot read; not starting rather than ignoring it",
            old_vault.display()
        )));
    }
    let pipeline = Arc::new(Pipeline::new(policy, keys, Arc::clone(&ledger))?);
    Ok((pipeline, ledger))
}

/// Runs the node until `shutdown` resolves; returns after draining and flushing.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    // TLS first: a broken certificate is reported before the stores are opened (and locked).
    let server_tls = Arc::new(tls::server_config(&config.tls)?);
    let (pipeline, ledger) = open_pipeline(&config)?;
    // The key-usage index follows the ledger: every second, and once more at shutdown.
    {
        let pipeline = Arc::clone(&pipeline);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_INDEX_EVERY);
            loop {
                tick.tick().await;
                let p = Arc::clone(&pipeline);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || p.index_usage()).await {
                    tracing::error!(error = %e, "key-usage indexing failed");
                }
            }
        });
    }
    // Automatic rotation: at start, then every `rotation_check_seconds`.
    {
        let pipeline = Arc::clone(&pipeline);
        let every = Duration::from_secs(config.keys.rotation_check_seconds);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let p = Arc::clone(&pipeline);
                let pass = tokio::task::spawn_blocking(move || {
                    crate::rotation::rotate_due(p.keys(), crate::keys::unix_now())
                })
                .await;
                if let Ok(Err(e)) = pass {
                    tracing::error!(error = %e, "automatic rotation failed");
                }
            }
        });
    }
    let reloader = Arc::new(crate::reload::Reloader::new(
        config.clone(),
        Arc::clone(&pipeline),
        server_tls,
    ));
    let router = api::router(Arc::clone(&pipeline)).layer(axum::Extension(Arc::clone(&reloader)));
    #[cfg(unix)]
    {
        // SIGHUP reloads; a failed reload is logged and changes nothing.
        let reloader = Arc::clone(&reloader);
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = reloader.reload();
                }
            });
        }
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tracing::info!(listen = %config.listen, policy = %pipeline.policy().digest_hex(), ledger_size = ledger.size(), "serving");
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = TlsAcceptor::from(reloader.tls());
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            // The verifier has checked the chain and the CRLs; this only reads who it is.
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| identity::peer_identity(c));
            let Some(peer) = peer else {
                tracing::warn!(%remote, "verified client certificate could not be read");
                return;
            };
            let service = TowerToHyperService::new(router.layer(axum::Extension(Arc::new(peer))));
            let conn = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time");
    }
    drop(router);
    if let Err(e) = pipeline.index_usage() {
        tracing::error!(error = %e, "key-usage indexing at shutdown failed; the next start resumes it");
    }
    drop(pipeline);
    // Every acknowledged entry was flushed before its answer; closing waits for the writer anyway.
    if let Ok(ledger) = Arc::try_unwrap(ledger) {
        ledger.close();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

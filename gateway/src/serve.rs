//! Running a node: assemble it from its configuration, accept mTLS connections, serve the API, and on
//! SIGTERM/SIGINT stop accepting, finish in-flight requests, flush and return.

use std::sync::Arc;
use std::time::Duration;

use keymgr::{KekSource, KeyManager};
use policies::PolicySet;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::ingress::body::BodyBudget;
use crate::ingress::{api, tls};
use crate::ledger::{self, Ledger, LedgerConfig};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// How often the key-usage index catches up with the ledger.
/// How often rate-limit state of quiet subjects is dropped.
const LIMITS_TIDY_EVERY: Duration = Duration::from_secs(60);
const USAGE_INDEX_EVERY: Duration = Duration::from_secs(1);
/// How long shutdown waits, after the drain, for the last users of the stores to let go.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// The checkpoint-signing key could not be read from the key store.
    #[error("checkpoint-signing key")]
    CheckpointKey(#[source] keymgr::Error),
    /// The ledger.
    #[error("ledger")]
    Ledger(#[from] ledger::LedgerError),
    /// The data directory has a vault database of an older layout.
    #[error("{0}")]
    OldLayout(String),
    /// Something in the data directory lets others in (or cannot be checked).
    #[error("data directory")]
    DataDir(#[from] keymgr::durable::DurableError),
    /// The stores could not be closed at shutdown (every acknowledged write was durable already).
    #[error("shutdown: {0}")]
    Shutdown(String),
    /// Assembling the pipeline.
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// An edge's channel key file.
    #[error("channel keys: {0}")]
    ChannelKeyFile(String),
    /// A consortium member's copy of the ledger does not verify.
    #[error("this member's copy of the ledger does not verify, so it does not take part: {0}")]
    Tampered(String),
    /// The consortium's Raft could not start.
    #[error("consortium: {0}")]
    Consortium(String),
    /// Risk control's quarantine list could not be read.
    #[error("risk control: {0}")]
    Risk(String),
    /// The channel's keys could not be read from the key store.
    #[error("channel keys")]
    ChannelKeys(#[source] keymgr::Error),
    /// The metric families could not be registered.
    #[error("metrics: {0}")]
    Metrics(String),
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
    let kek = config
        .kek
        .as_ref()
        .ok_or_else(|| ServeError::Kek("none configured".into()))?;
    if let Some(p) = &kek.pkcs11 {
        let pin = match (&p.pin_file, &p.pin_env) {
            (Some(f), _) => keymgr::PinSource::File(f.clone()),
            (None, Some(v)) => keymgr::PinSource::Env(v.clone()),
            (None, None) => return Err(ServeError::Kek("pkcs11: no PIN configured".into())),
        };
        return Ok(KekSource::Pkcs11(keymgr::Pkcs11Config {
            module: p.module.clone(),
            token_label: p.token_label.clone(),
            key_label: p.key_label.clone(),
            pin,
        }));
    }
    match (&kek.passphrase_file, &kek.key_file) {
        (Some(p), _) => {
            // A secret: the owner's alone, like the key file (and refused the same way).
            keymgr::durable::check_private(p).map_err(|e| ServeError::Kek(e.to_string()))?;
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(p)
                    .map_err(|e| ServeError::Kek(format!("{}: {e}", p.display())))?,
            );
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
pub fn open_pipeline(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<(Arc<Pipeline>, Arc<Ledger>), ServeError> {
    let data = config
        .data
        .as_deref()
        .ok_or_else(|| ServeError::Kek("no data directory configured".into()))?;
    check_data_dir(data)?;
    let policy = Arc::new(PolicySet::load(&config.policies).map_err(ServeError::Policy)?);
    let keys = Arc::new(KeyManager::open(&data.join("keys"), &kek_source(config)?)?);
    let now = crate::keys::unix_now();
    let signing = crate::checkpoint_keys::signing(&keys, &config.ledger.origin, now)
        .map_err(ServeError::CheckpointKey)?;
    if signing.usable_signer(now).is_none() {
        // The node starts so that officers can rotate through the admin API; it appends nothing
        // until then rather than sign with a revoked, destroyed or expired key.
        tracing::warn!(
            event = "no_checkpoint_signer",
            key = crate::init::CHECKPOINT_KEY,
            "no usable checkpoint-signing key: submissions are refused (503 key_revoked) until an \
             officer rotates it"
        );
    }
    if config.consortium.is_some() {
        verify_member_store(&ledger::store_dir(data))?;
    }
    let mut ledger_config = LedgerConfig::new(ledger::store_dir(data), &config.ledger.origin);
    ledger_config.metrics = Some(metrics.ledger.clone());
    let ledger = Arc::new(Ledger::open_with(ledger_config, signing)?);
    let old_vault = data.join("vault");
    if old_vault.exists() {
        // Made by a gateway before the vault moved beside the ledger; nothing reads it any more.
        return Err(ServeError::OldLayout(format!(
            "{}: a vault database of an older layout (the vault is now kept in the ledger store) \
             that this build cannot read; not starting rather than ignoring it",
            old_vault.display()
        )));
    }
    let quarantine = crate::risk::quarantine::Quarantine::open(&data.join("risk"))
        .map_err(|e| ServeError::Risk(e.to_string()))?;
    let risk = Arc::new(crate::risk::Sentinel::new(
        config.risk.clone(),
        quarantine,
        metrics.alarms.clone(),
        metrics.connections_blocked.clone(),
    ));
    let pipeline = Arc::new(Pipeline::new(
        policy,
        keys,
        Arc::clone(&ledger),
        metrics,
        risk,
    )?);
    Ok((pipeline, ledger))
}

/// A consortium member checks its whole copy before it takes part: every entry against its leaf
/// hash, the tree, every checkpoint. A member whose store was altered on disk refuses to start (its
/// cosignature would vouch for what it can no longer show), with one line naming what is wrong;
/// the others go on without it, and it is repaired by removing its store and letting it catch up
/// (docs/consortium.md).
fn verify_member_store(store: &std::path::Path) -> Result<(), ServeError> {
    if !store.exists() {
        return Ok(());
    }
    match crate::ledger::verify_store(store, &crate::ledger::VerifyOptions::default()) {
        Ok(report) => {
            tracing::info!(
                event = "consortium_store_verified",
                size = report.size,
                seconds = report.elapsed.as_secs_f64(),
                "this member's copy of the ledger verifies"
            );
            Ok(())
        }
        Err(failure) => {
            tracing::error!(event = "consortium_store_tampered", error = %failure, "this member's copy of the ledger does not verify: not taking part");
            Err(ServeError::Tampered(failure.to_string()))
        }
    }
}

/// Refuses a data directory in which anything (down to the stores' files) lets anyone but the node's
/// user in: it holds the ledger, the vault's sealed values and the wrapped keys.
fn check_data_dir(data: &std::path::Path) -> Result<(), keymgr::durable::DurableError> {
    let mut pending = vec![(data.to_owned(), 0u8)];
    while let Some((path, depth)) = pending.pop() {
        keymgr::durable::check_private(&path)?;
        // A node's data directory is at most three levels deep (data/ledger/ledger.redb); deeper
        // entries are not the node's and are not walked.
        if depth < 3 && path.is_dir() {
            let listing = std::fs::read_dir(&path).map_err(|e| keymgr::durable::DurableError {
                path: path.clone(),
                why: format!("cannot list it: {e}"),
            })?;
            for entry in listing.flatten() {
                pending.push((entry.path(), depth + 1));
            }
        }
    }
    Ok(())
}

/// Runs the node until `shutdown` resolves; returns after draining and closing the stores.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if let crate::config::Chain::Remote(remote) = &config.chain {
        let remote = remote.clone();
        return crate::edge::serve_edge(config, remote, shutdown).await;
    }
    // TLS first: a broken certificate is reported before the stores are opened (and locked).
    let server_tls = Arc::new(tls::server_config(&config.tls)?);
    let metrics = Arc::new(Metrics::new().map_err(|e| ServeError::Metrics(e.to_string()))?);
    let (pipeline, ledger) = open_pipeline(&config, Arc::clone(&metrics))?;
    // The key-usage index follows the ledger: every second, and once more at shutdown.
    // Background tasks hold the pipeline (and with it the stores): kept so shutdown can end them.
    let mut tasks = Vec::new();
    {
        let pipeline = Arc::clone(&pipeline);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_INDEX_EVERY);
            loop {
                tick.tick().await;
                let p = Arc::clone(&pipeline);
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || p.index_usage()).await {
                    tracing::error!(error = %e, "key-usage indexing failed");
                }
            }
        }));
    }
    // Rate-limit state of subjects that went quiet is dropped once a minute.
    {
        let pipeline = Arc::clone(&pipeline);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(LIMITS_TIDY_EVERY);
            loop {
                tick.tick().await;
                pipeline.tidy_limits();
            }
        }));
    }
    // Automatic rotation: at start, then every `rotation_check_seconds`.
    {
        let pipeline = Arc::clone(&pipeline);
        let every = Duration::from_secs(config.keys.rotation_check_seconds);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let p = Arc::clone(&pipeline);
                let pass = tokio::task::spawn_blocking(move || {
                    let pass = crate::rotation::rotate_due(p.keys(), crate::keys::unix_now());
                    // A rotated or expired checkpoint key changes the ledger's signer.
                    if let Err(e) = p.refresh_signing() {
                        tracing::error!(error = %e, "switching the checkpoint signer failed");
                    }
                    pass
                })
                .await;
                if let Ok(Err(e)) = pass {
                    tracing::error!(error = %e, "automatic rotation failed");
                }
            }
        }));
    }
    // A member admits the consortium's members on its channel: those of its configured seed until
    // Raft's own membership takes over (consortium::roster).
    let roster = config
        .consortium
        .as_ref()
        .map(|c| crate::consortium::roster::Roster::seeded(&c.membership()));
    let peers = roster.clone().map_or_else(
        crate::forward::Peers::default,
        crate::forward::Peers::with_members,
    );
    let reloader = Arc::new(crate::reload::Reloader::new(
        config.clone(),
        Arc::clone(&pipeline),
        server_tls,
        Arc::clone(&metrics),
        peers.clone(),
    ));
    let limits = &config.ingress;
    let budget = BodyBudget::new(
        limits.max_body_memory_bytes,
        Duration::from_secs(limits.body_timeout_seconds),
    );
    let router = api::router(Arc::clone(&pipeline), budget, Arc::clone(&metrics))
        .layer(axum::Extension(Arc::clone(&reloader)));
    #[cfg(unix)]
    {
        // SIGHUP reloads; a failed reload is logged and changes nothing.
        let reloader = Arc::clone(&reloader);
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tasks.push(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = reloader.reload_audited("operator", "SIGHUP").await;
                }
            }));
        }
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let mut consortium = None;
    if let Some(section) = &config.channel {
        peers.set(section);
        let channel = crate::forward::channel_config(
            &pipeline.shared_keys(),
            &peers,
            &config.ledger.origin,
            crate::keys::unix_now(),
        )
        .map_err(ServeError::ChannelKeys)?
        .with_timers(section.timers.timers());
        if let (Some(members), Some(data), Some(roster)) =
            (&config.consortium, &config.data, roster)
        {
            let started = crate::consortium::Consortium::start(
                members,
                roster,
                channel.identity(),
                data,
                Arc::clone(&ledger),
                channel.clone(),
                crate::forward::node_identity_key(&pipeline.shared_keys(), crate::keys::unix_now())
                    .map_err(ServeError::ChannelKeys)?,
                metrics.alarms.clone(),
            )
            .await
            .map_err(|e| ServeError::Consortium(e.to_string()))?;
            pipeline.replicate_through(Arc::clone(&started));
            {
                let (c, m) = (Arc::clone(&started), metrics.consortium.clone());
                tasks.push(tokio::spawn(async move { c.observe(m).await }));
                let c = Arc::clone(&started);
                tasks.push(tokio::spawn(async move { c.cosign_checkpoints().await }));
            }
            tracing::info!(
                event = "consortium_member",
                id = started.id(),
                members = members.members.len(),
                "consortium member"
            );
            consortium = Some(started);
        }
        let listener =
            TcpListener::bind(section.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    addr: section.listen,
                    source,
                })?;
        tracing::info!(channel = %section.listen, identity = %channel.identity(), peers = section.peers.len(), "channel listener");
        tasks.push(tokio::spawn(crate::forward::listen(
            listener,
            channel,
            router.clone(),
            metrics.channel.clone(),
            consortium.clone(),
            peers.clone(),
        )));
    }
    let monitoring = TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.metrics_listen,
            source,
        })?;
    {
        let router = crate::metrics::server::router(Arc::clone(&metrics), Arc::clone(&pipeline));
        // Ended with the other background tasks at shutdown.
        tasks.push(tokio::spawn(crate::metrics::server::serve(
            monitoring,
            router,
            std::future::pending(),
        )));
    }
    // The audit trail: this start, then the key store's journal (commands run offline while the
    // node was stopped, automatic rotations, officers' commands, disclosures) copied into the
    // ledger as it grows. After the consortium started: a member's appends go through it.
    // A single node does the first copy before it serves; a member cannot before the consortium
    // has a leader.
    let started = pipeline.consortium().is_none()
        && crate::audit::journal::start(&pipeline)
            .await
            .inspect_err(|e| tracing::warn!(event = "audit_copy_pending", error = %e, "the audit trail could not be brought up to date at start; trying again"))
            .is_ok();
    tasks.push(tokio::spawn(crate::audit::journal::follow(
        Arc::clone(&pipeline),
        started,
    )));
    // Risk control's alarms, quarantines and refused admin requests, into the audit trail.
    {
        let (sink, mut events) = crate::risk::Sentinel::audit_channel();
        pipeline.risk().audit_to(sink);
        let pipeline = Arc::clone(&pipeline);
        tasks.push(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Err(e) = pipeline.record_audit(&event, crate::audit::WAIT).await {
                    tracing::error!(event = "audit_unrecorded", kind = event.kind, error = %e, "an audit entry could not be appended");
                }
            }
        }));
    }
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, policy = %pipeline.policy().digest_hex(), ledger_size = ledger.size(), "serving");
    let tls = Arc::clone(&reloader);
    crate::ingress::accept::serve_tls(
        listener,
        move || tls.tls(),
        router.clone(),
        limits,
        Arc::clone(pipeline.risk()),
        metrics.tls_handshakes.clone(),
        shutdown,
    )
    .await;
    drop(router);
    if let Some(c) = consortium.take() {
        // Raft stops applying before the ledger closes; its state machine holds the ledger.
        c.shutdown().await;
    }
    // End the background tasks; a pass under way finishes first (abort takes effect at an await).
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(reloader);
    if let Err(e) = pipeline.index_usage() {
        tracing::error!(error = %e, "key-usage indexing at shutdown failed; the next start resumes it");
    }
    drop(pipeline);
    close_ledger(ledger).await?;
    tracing::info!("stopped: stores closed");
    Ok(())
}

/// Closes the ledger once this is its last handle (connections past the drain may still hold one for
/// a moment): the writer drains and the store is released. Every acknowledged entry was durable before
/// its answer, so failing to close loses nothing; it is still reported, as the exit status.
async fn close_ledger(mut ledger: Arc<Ledger>) -> Result<(), ServeError> {
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    loop {
        match Arc::try_unwrap(ledger) {
            Ok(only) => {
                tokio::task::spawn_blocking(move || only.close())
                    .await
                    .map_err(|e| ServeError::Shutdown(format!("closing the ledger: {e}")))?;
                return Ok(());
            }
            Err(shared) if tokio::time::Instant::now() >= deadline => {
                return Err(ServeError::Shutdown(format!(
                    "the ledger is still in use by {} other holders after {} s; not closed",
                    Arc::strong_count(&shared) - 1,
                    CLOSE_TIMEOUT.as_secs()
                )));
            }
            Err(shared) => {
                ledger = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
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

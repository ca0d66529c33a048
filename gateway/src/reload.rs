//! Reloading policies and TLS material (server certificate, CA bundle, CRLs) without a restart, on
//! SIGHUP or `POST /admin/v1/reload`. All or nothing: if any new file is broken, the old configuration
//! stays in force and the errors are reported. Requests already running finish under the policy they
//! started with; connections already open keep their TLS session. The listen addresses, data
//! directory and KEK are read at start only.

use std::sync::{Arc, PoisonError, RwLock};

use policies::PolicySet;

use crate::config::Config;
use crate::ingress::tls;
use crate::pipeline::Pipeline;

/// What a successful reload put in force.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// The digest of the policy now in force.
    pub policy: String,
}

/// Holds what can be reloaded.
pub struct Reloader {
    config: Config,
    pipeline: Arc<Pipeline>,
    tls: RwLock<Arc<rustls::ServerConfig>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The channel's allowed peers, read again from `gateway.yaml` at each reload.
    peers: crate::forward::Peers,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader over the configuration the node started with.
    pub fn new(
        config: Config,
        pipeline: Arc<Pipeline>,
        tls: Arc<rustls::ServerConfig>,
        metrics: Arc<crate::metrics::Metrics>,
        peers: crate::forward::Peers,
    ) -> Reloader {
        Reloader {
            config,
            pipeline,
            tls: RwLock::new(tls),
            metrics,
            peers,
        }
    }

    /// The TLS configuration for new connections.
    pub fn tls(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.tls.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// [`Reloader::reload`], with its outcome in the audit trail (`audit.config.reload`: the new
    /// policy's digest, or why nothing changed), for `actor` (an officer, or `operator` for a
    /// signal) by `trigger` (`admin_api`, `SIGHUP`). A reload is not held back when the ledger cannot
    /// take the entry (a node must be able to take new TLS material and CRLs at any time); that is
    /// logged as `audit_unrecorded`.
    pub async fn reload_audited(
        &self,
        actor: &str,
        trigger: &str,
    ) -> Result<Reloaded, Vec<String>> {
        let result = self.reload();
        let (outcome, reason, policy) = match &result {
            Ok(r) => (crate::audit::Outcome::Done, None, Some(r.policy.clone())),
            Err(errors) => (
                crate::audit::Outcome::Refused,
                Some(errors.join("; ")),
                None,
            ),
        };
        let event = crate::audit::Event {
            kind: "config.reload",
            actor: actor.to_owned(),
            target: "policies and TLS material".to_owned(),
            outcome,
            reason,
            details: serde_json::json!({
                "trigger": trigger,
                "policy": policy.unwrap_or_else(|| self.pipeline.policy().digest_hex()),
            }),
        };
        if let Err(e) = self.pipeline.record_audit(&event, crate::audit::WAIT).await {
            tracing::error!(event = "audit_unrecorded", kind = event.kind, error = %e, "an audit entry could not be appended");
        }
        result
    }

    /// Reads the policies and TLS files again; applies them only if all are good.
    pub fn reload(&self) -> Result<Reloaded, Vec<String>> {
        let policy = PolicySet::load(&self.config.policies)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>());
        let server = tls::server_config(&self.config.tls).map_err(|e| vec![e.to_string()]);
        // The channel's peers from gateway.yaml again (a node started without a file keeps its own).
        let channel = if self.config.file.as_os_str().is_empty() {
            Ok(self.config.channel.clone())
        } else {
            crate::config::Config::load(&self.config.file)
                .map(|c| c.channel)
                .map_err(|e| vec![e.to_string()])
        };
        match (policy, server.and_then(|s| channel.map(|c| (s, c)))) {
            (Ok(policy), Ok((server, channel))) => {
                if let Some(section) = &channel {
                    self.peers.set(section);
                }
                let digest = policy.digest_hex();
                self.pipeline.set_policy(Arc::new(policy));
                *self.tls.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(server);
                tracing::warn!(event = "reloaded", policy = %digest, "reloaded policies and TLS material");
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                Ok(Reloaded { policy: digest })
            }
            (p, t) => {
                let errors: Vec<String> = p.err().into_iter().chain(t.err()).flatten().collect();
                for e in &errors {
                    tracing::error!(event = "reload_failed", error = %e, "reload refused; the previous configuration stays in force");
                }
                self.metrics.reloads.with_label_values(&["failed"]).inc();
                Err(errors)
            }
        }
    }
}

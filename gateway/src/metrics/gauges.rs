//! States read when Prometheus scrapes: the ledger's size and checkpoint age, each managed key's age,
//! time to rotation and version states, readiness and build info. Reading them per scrape (every 15 s
//! or so) costs nothing on the request path.

use keymgr::{KeyFilter, KeyManager, KeyRecord, VersionState};
use prometheus::{IntGauge, IntGaugeVec, Registry};

use super::{gauge, gauge_vec};
use crate::ledger::Ledger;

/// The git commit this binary was built from (`build.rs`), or `unknown` outside a checkout.
pub const GIT_COMMIT: &str = env!("LEDGERGATE_GIT_COMMIT");

/// Every version state keymgr knows, so that a state a key leaves reads 0 rather than vanishing.
const STATES: &[&str] = &[
    "active",
    "deactivated",
    "compromised",
    "destroy-scheduled",
    "destroyed",
];

/// The gauges, registered.
#[derive(Debug, Clone)]
pub(crate) struct Gauges {
    ledger_entries: IntGauge,
    checkpoint_age: IntGauge,
    key_age: IntGaugeVec,
    key_rotation_due: IntGaugeVec,
    key_usable: IntGaugeVec,
    key_versions: IntGaugeVec,
    ready: IntGauge,
    build_info: IntGaugeVec,
}

impl Gauges {
    pub(crate) fn new(r: &Registry) -> prometheus::Result<Gauges> {
        Ok(Gauges {
            ledger_entries: gauge(
                r,
                "ledgergate_ledger_entries",
                "Entries in the ledger (the published tree size).",
            )?,
            checkpoint_age: gauge(
                r,
                "ledgergate_checkpoint_age_seconds",
                "Seconds since the latest checkpoint was signed.",
            )?,
            key_age: gauge_vec(
                r,
                "ledgergate_key_age_seconds",
                "Age of each managed key's primary version (absent while it has none).",
                &["key"],
            )?,
            key_rotation_due: gauge_vec(
                r,
                "ledgergate_key_rotation_due_seconds",
                "Seconds until each managed key's primary version is due for rotation (negative: overdue).",
                &["key"],
            )?,
            key_usable: gauge_vec(
                r,
                "ledgergate_key_usable",
                "1 while a managed key has a version that new work may use, else 0.",
                &["key"],
            )?,
            key_versions: gauge_vec(
                r,
                "ledgergate_key_versions",
                "Versions of each managed key in each state.",
                &["key", "state"],
            )?,
            ready: gauge(
                r,
                "ledgergate_ready",
                "1 while /readyz answers 200, else 0.",
            )?,
            build_info: gauge_vec(
                r,
                "ledgergate_build_info",
                "Always 1; the labels say which build runs with which policy.",
                &["version", "commit", "policy_digest"],
            )?,
        })
    }

    /// Reads every state now. `reasons` is what `/readyz` found wrong (empty: ready).
    pub(crate) fn refresh(
        &self,
        ledger: &Ledger,
        keys: &KeyManager,
        policy_digest: &str,
        reasons: &[String],
        now: i64,
    ) {
        self.ledger_entries
            .set(i64::try_from(ledger.size()).unwrap_or(i64::MAX));
        self.checkpoint_age
            .set(now.saturating_sub(ledger.checkpoint_signed_at()).max(0));
        self.ready.set(i64::from(reasons.is_empty()));
        self.build_info.reset();
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_COMMIT, policy_digest])
            .set(1);
        // Managed keys only: a handful, named in configuration. Subject keys (millions) never are.
        match keys.list(KeyFilter::default(), None, keymgr::MAX_PAGE) {
            Ok(records) => {
                for gauge in [&self.key_age, &self.key_rotation_due, &self.key_usable] {
                    gauge.reset();
                }
                self.key_versions.reset();
                for r in &records {
                    self.key(r, now);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading keys for metrics failed"),
        }
    }

    /// What an edge has of these: readiness (its link) and build info. It has no ledger and no keys.
    pub(crate) fn refresh_edge(&self, policy_digest: &str, reasons: &[String]) {
        self.ready.set(i64::from(reasons.is_empty()));
        self.build_info.reset();
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_COMMIT, policy_digest])
            .set(1);
    }

    fn key(&self, r: &KeyRecord, now: i64) {
        let name = r.name.as_str();
        for state in STATES {
            let n = r
                .versions
                .iter()
                .filter(|v| v.state.name() == *state)
                .count();
            self.key_versions
                .with_label_values(&[name, state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let primary = r
            .primary
            .and_then(|p| r.versions.iter().find(|v| v.version == p))
            .filter(|v| matches!(v.state, VersionState::Active));
        let usable = primary.is_some_and(|v| now.saturating_sub(v.created_at) < max_age(r));
        self.key_usable
            .with_label_values(&[name])
            .set(i64::from(usable));
        if let Some(v) = primary {
            let age = now.saturating_sub(v.created_at);
            self.key_age.with_label_values(&[name]).set(age);
            if let Some(every) = r.rotate_every {
                let every = i64::try_from(every).unwrap_or(i64::MAX);
                self.key_rotation_due
                    .with_label_values(&[name])
                    .set(every.saturating_sub(age));
            }
        }
    }
}

fn max_age(r: &KeyRecord) -> i64 {
    i64::try_from(r.max_age).unwrap_or(i64::MAX)
}

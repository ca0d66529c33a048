//! Prometheus metrics (contract §4, "Metrics"): the families a node exports and the few calls that
//! record them. Everything is prefixed `ledgergate_`, counters end in `_total`, durations are seconds.
//! Label values are bounded: route templates, record types the policy declares, stable error codes,
//! managed key names and key states; never a record id, a subject or free text.
//!
//! The crate is `prometheus` (tikv) with default features off: the user chose it, it is maintained,
//! and without its `protobuf` feature it is small. `prometheus-client` (the official one) would also
//! do; nothing here needs what only it has (OpenMetrics exemplars).
//!
//! Values that are states rather than events (ledger size, checkpoint age, key ages) are read when
//! Prometheus scrapes ([`gauges`]); events are counted where they happen.

pub mod gauges;
pub mod server;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, core::Collector,
};

/// A record type label for a type the policy does not declare (or a line that never got that far):
/// one value, whatever the client sent.
pub const UNKNOWN_TYPE: &str = "unknown";

/// Every metric of a node, registered in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Submitted records by type and outcome (`created`, `duplicate` or the problem code).
    pub records: IntCounterVec,
    /// Request durations by route template.
    pub request_seconds: HistogramVec,
    /// Lines per batch request.
    pub batch_records: Histogram,
    /// Requests refused for a subject's rate.
    pub rate_limited: IntCounter,
    /// Sealed values read in clear by anyone but their owner, by record type.
    pub unseals: IntCounterVec,
    /// Values sealed into the vault, by record type.
    pub sealed_values: IntCounterVec,
    /// Policy and configuration reloads by outcome (`ok`, `failed`).
    pub reloads: IntCounterVec,
    /// Alarms raised, by kind.
    pub alarms: IntCounterVec,
    /// Connections refused at accept because their source address is blocked (risk control).
    pub connections_blocked: IntCounter,
    /// Finished provider/officer TLS handshakes by key exchange group (`X25519MLKEM768`, `X25519`,
    /// …): how many clients still lack post-quantum key exchange.
    pub tls_handshakes: IntCounterVec,
    /// What the ledger's writer records.
    pub ledger: LedgerMetrics,
    /// The channel's sessions, handshakes and rekeys (a ledger node's listener, an edge's link).
    pub channel: ChannelMetrics,
    /// A consortium member's Raft (zero on a node of its own).
    pub consortium: ConsortiumMetrics,
    /// Read at scrape time.
    pub(crate) gauges: gauges::Gauges,
}

/// A consortium member's view of its Raft, as openraft reports it.
#[derive(Debug, Clone)]
pub struct ConsortiumMetrics {
    /// This member's node id.
    pub member: IntGauge,
    /// The leader it knows of (0: none).
    pub leader: IntGauge,
    /// Its current term.
    pub term: IntGauge,
    /// The last Raft log index it applied to its ledger.
    pub applied: IntGauge,
    /// The last Raft log index its current snapshot covers (built here, or installed from the
    /// leader).
    pub snapshot: IntGauge,
    /// The last Raft log index removed from its Raft log (the snapshot holds it).
    pub purged: IntGauge,
}

/// The channel's part (a ledger node's listener or an edge's link).
#[derive(Debug, Clone)]
pub struct ChannelMetrics {
    /// Sessions open now.
    pub sessions: IntGauge,
    /// Handshakes by outcome: `ok`, `failed`, `rate_limited`, `half_open_full`.
    pub handshakes: IntCounterVec,
    /// Rekeys finished.
    pub rekeys: IntCounter,
}

/// The ledger writer's part: what one group commit carried and how long its durable write took.
#[derive(Debug, Clone)]
pub struct LedgerMetrics {
    /// Entries per group commit.
    pub group_entries: Histogram,
    /// Seconds of each group commit's durable write (the store's commit, which ends in fdatasync).
    pub commit_seconds: Histogram,
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> prometheus::Result<Histogram> {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, Histogram::with_opts(opts))
}

/// Registers a collector just built (the error of building it, or of a name clash, is kept).
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    built: prometheus::Result<C>,
) -> prometheus::Result<C> {
    let c = built?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

/// Request durations: 0.5 ms to ~16 s, doubling.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
    4.096, 8.192, 16.384,
];
/// Counts per batch or group: 1 to 16384, quadrupling.
const COUNT_BUCKETS: &[f64] = &[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0];

impl Metrics {
    /// Every family, registered in a new registry. Fails only on a bad or clashing name (a bug the
    /// unit test below catches).
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let r = &registry;
        let request_seconds = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "ledgergate_request_duration_seconds",
                    "Time from a request's head to its answer, by route template.",
                )
                .buckets(SECONDS_BUCKETS.to_vec()),
                &["route"],
            ),
        )?;
        Ok(Metrics {
            records: counter_vec(
                r,
                "ledgergate_records_total",
                "Submitted records by record type and outcome (created, duplicate, or the problem code).",
                &["type", "outcome"],
            )?,
            request_seconds,
            batch_records: histogram(
                r,
                "ledgergate_batch_records",
                "Lines per batch request.",
                COUNT_BUCKETS,
            )?,
            rate_limited: register(
                r,
                IntCounter::new(
                    "ledgergate_rate_limited_total",
                    "Requests refused because their subject exceeded its rate (429).",
                ),
            )?,
            unseals: counter_vec(
                r,
                "ledgergate_unseals_total",
                "Sealed values read in clear by a subject other than the record's provider, by record type.",
                &["type"],
            )?,
            sealed_values: counter_vec(
                r,
                "ledgergate_vault_sealed_values_total",
                "Values sealed into the vault, by record type.",
                &["type"],
            )?,
            reloads: counter_vec(
                r,
                "ledgergate_reloads_total",
                "Policy, certificate and CRL reloads by outcome (ok, failed).",
                &["outcome"],
            )?,
            alarms: counter_vec(
                r,
                "ledgergate_alarms_total",
                "Alarms raised, by kind.",
                &["kind"],
            )?,
            connections_blocked: register(
                r,
                IntCounter::new(
                    "ledgergate_connections_blocked_total",
                    "Connections refused at accept because risk control blocked their source address.",
                ),
            )?,
            tls_handshakes: counter_vec(
                r,
                "ledgergate_tls_handshakes_total",
                "Finished TLS handshakes with providers and officers, by key exchange group.",
                &["group"],
            )?,
            ledger: LedgerMetrics {
                group_entries: histogram(
                    r,
                    "ledgergate_ledger_group_commit_entries",
                    "Entries per group commit.",
                    COUNT_BUCKETS,
                )?,
                commit_seconds: histogram(
                    r,
                    "ledgergate_ledger_sync_duration_seconds",
                    "Duration of each group commit's durable write (ends in fdatasync).",
                    SECONDS_BUCKETS,
                )?,
            },
            channel: ChannelMetrics {
                sessions: gauge(
                    r,
                    "ledgergate_channel_sessions",
                    "Channel sessions open now (peers connected to this node).",
                )?,
                handshakes: counter_vec(
                    r,
                    "ledgergate_channel_handshakes_total",
                    "Channel handshakes by outcome (ok, failed, rate_limited, half_open_full).",
                    &["outcome"],
                )?,
                rekeys: register(
                    r,
                    IntCounter::new(
                        "ledgergate_channel_rekeys_total",
                        "Channel rekeys finished (fresh handshakes inside a session).",
                    ),
                )?,
            },
            consortium: ConsortiumMetrics {
                member: gauge(
                    r,
                    "ledgergate_consortium_member_id",
                    "This node's member id in its consortium (0: not a member).",
                )?,
                leader: gauge(
                    r,
                    "ledgergate_consortium_leader_id",
                    "The consortium leader this member knows of (0: none).",
                )?,
                term: gauge(r, "ledgergate_consortium_term", "This member's Raft term.")?,
                applied: gauge(
                    r,
                    "ledgergate_consortium_applied_index",
                    "The last Raft log index this member applied to its ledger.",
                )?,
                snapshot: gauge(
                    r,
                    "ledgergate_consortium_snapshot_index",
                    "The last Raft log index this member's current snapshot covers (0: none).",
                )?,
                purged: gauge(
                    r,
                    "ledgergate_consortium_purged_index",
                    "The last Raft log index removed from this member's Raft log (0: none).",
                )?,
            },
            gauges: gauges::Gauges::new(r)?,
            registry,
        })
    }

    /// One submitted record's outcome. `record_type` must be a type the policy declares (or
    /// [`UNKNOWN_TYPE`]): label values stay bounded.
    pub fn record(&self, record_type: &str, outcome: &str) {
        self.records
            .with_label_values(&[record_type, outcome])
            .inc();
    }

    /// The text exposition of every metric (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntGaugeVec> {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    register(registry, IntGauge::new(name, help))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_registers_and_renders() {
        let m = Metrics::new().unwrap();
        m.record("loan_application", "created");
        m.rate_limited.inc();
        m.ledger.group_entries.observe(3.0);
        let text = m.render();
        for name in [
            "ledgergate_records_total{outcome=\"created\",type=\"loan_application\"} 1",
            "ledgergate_rate_limited_total 1",
            "ledgergate_ledger_group_commit_entries_count 1",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}

//! The node's risk control: it takes in what the node observes, runs the detectors, and responds to
//! their alarms — a log line (`warn`, `event = "alarm"`), `ledgergate_alarms_total{kind}`, an entry in
//! the recent-alarms list (`GET /admin/v1/alarms`), an audit entry in the ledger, a block of the
//! source address (refused at accept for `risk.block_seconds`), and, with `risk.auto_quarantine`, a
//! quarantine of the subject. Officers quarantine and release subjects themselves too; a quarantined
//! subject gets `403 quarantined` on every route.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::config::RiskSection;
use super::detect::{Alarm, AlarmKind, Detector, Observation, Severity, Who};
use super::quarantine::{Quarantine, QuarantineError, Quarantined};
use crate::audit::{Event, Outcome};

/// Most alarms the recent-alarms list keeps (the oldest go first; all are in the audit trail).
const MAX_RECENT: usize = 1000;
/// Audit entries waiting for the ledger; beyond this an alarm's entry is dropped and counted (the
/// alarm itself is still logged, counted and listed).
const AUDIT_QUEUE: usize = 256;
/// Refused admin requests put in the audit trail per source address and window; the rest are in
/// the `authorization_failures` alarm's count.
const ADMIN_REFUSALS_PER_WINDOW: u64 = 5;

/// An alarm as listed and recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Raised {
    /// The kind (`submission_burst`, …).
    pub kind: &'static str,
    /// How serious.
    pub severity: Severity,
    /// The subject it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The source address it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The counts that show it.
    pub evidence: BTreeMap<&'static str, u64>,
    /// When (RFC 3339).
    pub at: String,
    /// What the node did: `blocked`, `quarantined`.
    pub response: Vec<&'static str>,
}

/// Risk control's state; shared by the listener, the pipeline and the admin API.
pub struct Sentinel {
    config: RiskSection,
    detector: Mutex<Detector>,
    /// Source addresses refused at accept, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    recent: Mutex<VecDeque<Raised>>,
    quarantine: Quarantine,
    alarms_total: prometheus::IntCounterVec,
    blocked_total: prometheus::IntCounter,
    /// Where audit entries go (a task that appends them), once the node has a ledger.
    audit: std::sync::OnceLock<tokio::sync::mpsc::Sender<Event>>,
    /// Refused admin requests recorded per source in the current window.
    admin_refusals: Mutex<(Instant, HashMap<IpAddr, u64>)>,
}

impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinel").finish_non_exhaustive()
    }
}

fn who_fields(who: &Who) -> (Option<String>, Option<String>, String) {
    match who {
        Who::Subject(s) => (Some(s.clone()), None, format!("subject {s}")),
        Who::Source(a) => (None, Some(a.to_string()), format!("source {a}")),
    }
}

impl Sentinel {
    /// Risk control with `config`; the quarantine list is kept in `quarantine` (durably).
    pub fn new(
        config: RiskSection,
        quarantine: Quarantine,
        alarms_total: prometheus::IntCounterVec,
        blocked_total: prometheus::IntCounter,
    ) -> Sentinel {
        Sentinel {
            detector: Mutex::new(Detector::new(&config)),
            config,
            blocked: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            quarantine,
            alarms_total,
            blocked_total,
            audit: std::sync::OnceLock::new(),
            admin_refusals: Mutex::new((Instant::now(), HashMap::new())),
        }
    }

    /// Sends audit entries to `sink` from now on (set once, when the node has a ledger).
    pub fn audit_to(&self, sink: tokio::sync::mpsc::Sender<Event>) {
        let _ = self.audit.set(sink);
    }

    /// A channel for [`Sentinel::audit_to`] and the receiver its appending task reads.
    pub fn audit_channel() -> (
        tokio::sync::mpsc::Sender<Event>,
        tokio::sync::mpsc::Receiver<Event>,
    ) {
        tokio::sync::mpsc::channel(AUDIT_QUEUE)
    }

    fn record(&self, event: Event) {
        if let Some(sink) = self.audit.get()
            && sink.try_send(event).is_err()
        {
            tracing::warn!(
                event = "audit_dropped",
                "the audit queue is full: a risk event is logged and counted but not in the ledger"
            );
        }
    }

    /// Takes in one observation: runs the detectors, and responds to an alarm.
    pub fn observe(&self, seen: Observation<'_>) {
        let alarm = self
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(seen, Instant::now());
        if let Some(alarm) = alarm {
            self.raise(&alarm);
        }
    }

    fn raise(&self, alarm: &Alarm) {
        let kind = alarm.kind;
        let severity = kind.severity();
        let (subject, source, target) = who_fields(&alarm.who);
        let mut response = Vec::new();
        match &alarm.who {
            Who::Source(address) if severity == Severity::High => {
                let until = Instant::now() + Duration::from_secs(self.config.block_seconds);
                self.blocked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(*address, until);
                response.push("blocked");
            }
            Who::Subject(name) if severity == Severity::High && self.config.auto_quarantine => {
                match self
                    .quarantine
                    .add(name, &format!("alarm {}", kind.name()), "gateway")
                {
                    Ok(_) => {
                        response.push("quarantined");
                        self.record(quarantine_event(
                            name,
                            "gateway",
                            true,
                            &format!("alarm {}", kind.name()),
                        ));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "automatic quarantine failed");
                    }
                }
            }
            _ => {}
        }
        let evidence: BTreeMap<&'static str, u64> = alarm.evidence.iter().copied().collect();
        tracing::warn!(
            event = "alarm",
            kind = kind.name(),
            ?severity,
            subject = subject.as_deref(),
            source = source.as_deref(),
            evidence = ?evidence,
            response = ?response,
            "risk alarm"
        );
        self.alarms_total.with_label_values(&[kind.name()]).inc();
        let raised = Raised {
            kind: kind.name(),
            severity,
            subject,
            source,
            evidence: evidence.clone(),
            at: keymgr::rfc3339(crate::keys::unix_now()),
            response: response.clone(),
        };
        {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if recent.len() >= MAX_RECENT {
                recent.pop_front();
            }
            recent.push_back(raised);
        }
        self.record(Event {
            kind: audit_kind(kind),
            actor: "gateway".to_owned(),
            target,
            outcome: Outcome::Done,
            reason: None,
            details: json!({
                "severity": severity,
                "evidence": evidence,
                "window_seconds": self.config.window_seconds,
                "response": response,
            }),
        });
    }

    /// Whether connections from `address` are refused now (counted when they are).
    pub fn is_blocked(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        let mut blocked = self
            .blocked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match blocked.get(&address) {
            Some(until) if *until > now => {
                self.blocked_total.inc();
                true
            }
            Some(_) => {
                blocked.remove(&address);
                false
            }
            None => false,
        }
    }

    /// The most recent alarms, newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> Vec<Raised> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Whether `subject` is quarantined.
    pub fn is_quarantined(&self, subject: &str) -> bool {
        self.quarantine.contains(subject)
    }

    /// The quarantined subjects.
    pub fn quarantined(&self) -> Vec<Quarantined> {
        self.quarantine.list()
    }

    /// Quarantines `subject` for `actor`, durably; answers whether it was not already. The caller
    /// records the audit entry (it knows whether the ledger took it).
    pub fn quarantine(
        &self,
        subject: &str,
        reason: &str,
        actor: &str,
    ) -> Result<bool, QuarantineError> {
        self.quarantine.add(subject, reason, actor)
    }

    /// Releases `subject`, durably; answers whether it was quarantined.
    pub fn release(&self, subject: &str) -> Result<bool, QuarantineError> {
        self.quarantine.remove(subject)
    }

    /// A refused admin request from `source` by `who` (a subject, or `unidentified`) on `route`:
    /// counted by the `authorization_failures` detector, and the first few per source and window
    /// put in the audit trail (`audit.admin.refused`).
    pub fn admin_refused(&self, source: Option<IpAddr>, who: &str, route: &str) {
        let first_few = {
            let mut seen = self
                .admin_refusals
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let window = Duration::from_secs(self.config.window_seconds);
            if seen.0.elapsed() >= window {
                *seen = (Instant::now(), HashMap::new());
            }
            let key = source.unwrap_or(IpAddr::from([0, 0, 0, 0]));
            if seen.1.len() >= self.config.max_tracked && !seen.1.contains_key(&key) {
                false
            } else {
                let n = seen.1.entry(key).or_insert(0);
                *n += 1;
                *n <= ADMIN_REFUSALS_PER_WINDOW
            }
        };
        if first_few {
            self.record(Event {
                kind: "admin.refused",
                actor: who.to_owned(),
                target: route.to_owned(),
                outcome: Outcome::Refused,
                reason: Some("not a security officer".into()),
                details: json!({ "source": source.map(|s| s.to_string()) }),
            });
        }
    }
}

/// The audit entry of a quarantine or a release.
pub fn quarantine_event(subject: &str, actor: &str, quarantine: bool, reason: &str) -> Event {
    Event {
        kind: if quarantine {
            "risk.quarantine"
        } else {
            "risk.release"
        },
        actor: actor.to_owned(),
        target: format!("subject {subject}"),
        outcome: Outcome::Done,
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        details: serde_json::Value::Null,
    }
}

/// The audit kind of an alarm.
fn audit_kind(kind: AlarmKind) -> &'static str {
    match kind {
        AlarmKind::SubmissionBurst => "alarm.submission_burst",
        AlarmKind::TypeSpread => "alarm.type_spread",
        AlarmKind::ValidationFailures => "alarm.validation_failures",
        AlarmKind::ForeignReads => "alarm.foreign_reads",
        AlarmKind::OfficerRate => "alarm.officer_rate",
        AlarmKind::OfficerOffHours => "alarm.officer_off_hours",
        AlarmKind::HandshakeFailures => "alarm.handshake_failures",
        AlarmKind::AuthorizationFailures => "alarm.authorization_failures",
    }
}

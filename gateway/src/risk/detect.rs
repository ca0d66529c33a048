//! The anomaly detectors: pure functions of what was observed and `now` (no clock, no I/O), so
//! every threshold is unit-tested without sleeping. Each detector counts events per window (of
//! `risk.window_seconds`) per subject or per source address, and raises an alarm once per window
//! when its threshold is crossed. Memory is bounded: at most `risk.max_tracked` subjects and as many
//! source addresses are tracked; beyond it the stalest are forgotten.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::{Hours, RiskSection};

/// Most record types remembered per subject (types come from the policy, so this only bounds a
/// policy with very many).
const MAX_TYPES: usize = 256;

/// What the node saw.
#[derive(Debug, Clone, Copy)]
pub enum Observation<'a> {
    /// A record accepted from `subject`.
    Submitted {
        /// The policy subject.
        subject: &'a str,
        /// Its record type.
        record_type: &'a str,
    },
    /// A record from `subject` refused as invalid (schema, fields, JSON).
    Invalid {
        /// The policy subject.
        subject: &'a str,
    },
    /// `subject` read a record another provider submitted (or its sealed values).
    ForeignRead {
        /// The policy subject.
        subject: &'a str,
    },
    /// An officer's command (a key operation, a reload, a quarantine, a membership change).
    OfficerCommand {
        /// The officer.
        officer: &'a str,
        /// Minutes since midnight, UTC, when it came.
        minute_of_day: u32,
    },
    /// A TLS handshake from `source` failed or timed out.
    HandshakeFailed {
        /// The source address.
        source: IpAddr,
    },
    /// A request from `source` was refused as unauthenticated or forbidden.
    Unauthorized {
        /// The source address.
        source: IpAddr,
    },
}

/// The kinds of alarm (the `kind` label of `ledgergate_alarms_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// A subject's submissions far above its own baseline.
    SubmissionBurst,
    /// A subject suddenly submitting record types it never did.
    TypeSpread,
    /// A burst of a subject's invalid submissions.
    ValidationFailures,
    /// Many reads of other providers' records by one subject.
    ForeignReads,
    /// An officer's commands at an unusual rate.
    OfficerRate,
    /// An officer's command outside the configured hours.
    OfficerOffHours,
    /// A burst of failed TLS handshakes from one address.
    HandshakeFailures,
    /// A burst of refused requests from one address.
    AuthorizationFailures,
}

/// How serious an alarm is: a high one may quarantine its subject (`risk.auto_quarantine`), and one
/// about a source address blocks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// Acted on.
    High,
}

impl AlarmKind {
    /// Its name (metrics label, audit kind, API).
    pub fn name(self) -> &'static str {
        match self {
            AlarmKind::SubmissionBurst => "submission_burst",
            AlarmKind::TypeSpread => "type_spread",
            AlarmKind::ValidationFailures => "validation_failures",
            AlarmKind::ForeignReads => "foreign_reads",
            AlarmKind::OfficerRate => "officer_rate",
            AlarmKind::OfficerOffHours => "officer_off_hours",
            AlarmKind::HandshakeFailures => "handshake_failures",
            AlarmKind::AuthorizationFailures => "authorization_failures",
        }
    }

    /// How serious it is.
    pub fn severity(self) -> Severity {
        match self {
            AlarmKind::SubmissionBurst
            | AlarmKind::ForeignReads
            | AlarmKind::HandshakeFailures
            | AlarmKind::AuthorizationFailures => Severity::High,
            AlarmKind::TypeSpread
            | AlarmKind::ValidationFailures
            | AlarmKind::OfficerRate
            | AlarmKind::OfficerOffHours => Severity::Low,
        }
    }
}

/// Whom an alarm is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// A policy subject (a provider, an officer).
    Subject(String),
    /// A source address.
    Source(IpAddr),
}

/// An anomaly: what, about whom, and the counts that show it (never record contents).
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// What.
    pub kind: AlarmKind,
    /// About whom.
    pub who: Who,
    /// The evidence: named counts.
    pub evidence: Vec<(&'static str, u64)>,
}

/// Events counted in the current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u64,
    /// Whether this window already raised its alarm.
    fired: bool,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            count: 0,
            fired: false,
        }
    }

    /// Moves to the window holding `now`; answers how many whole windows ended (0: the same one),
    /// and the count of the one that ended last.
    fn roll(&mut self, now: Instant, len: Duration) -> (u64, u64) {
        let elapsed = now.saturating_duration_since(self.start);
        let ended = u64::try_from(elapsed.as_nanos() / len.as_nanos().max(1)).unwrap_or(u64::MAX);
        if ended == 0 {
            return (0, 0);
        }
        let last = self.count;
        *self = Window::new(now);
        (ended, last)
    }

    /// Counts one event; true the first time this window reaches `threshold`.
    fn crosses(&mut self, now: Instant, len: Duration, threshold: u64) -> bool {
        self.roll(now, len);
        self.count += 1;
        if self.count >= threshold && !self.fired {
            self.fired = true;
            return true;
        }
        false
    }
}

#[derive(Debug)]
struct SubjectTrack {
    last_seen: Instant,
    submissions: Window,
    /// Average submissions per window (exponential moving average).
    baseline: f64,
    /// Whether a whole window of this subject has been seen (before that, nothing is "new").
    has_history: bool,
    known_types: HashSet<String>,
    new_types: Window,
    invalid: Window,
    foreign: Window,
    officer: Window,
    off_hours: Window,
}

impl SubjectTrack {
    fn new(now: Instant) -> SubjectTrack {
        SubjectTrack {
            last_seen: now,
            submissions: Window::new(now),
            baseline: 0.0,
            has_history: false,
            known_types: HashSet::new(),
            new_types: Window::new(now),
            invalid: Window::new(now),
            foreign: Window::new(now),
            officer: Window::new(now),
            off_hours: Window::new(now),
        }
    }
}

#[derive(Debug)]
struct SourceTrack {
    last_seen: Instant,
    handshakes: Window,
    unauthorized: Window,
}

/// The detectors' state.
#[derive(Debug)]
pub struct Detector {
    window: Duration,
    rate_factor: f64,
    rate_min: u64,
    /// The weight of a new window in the baseline: 1 / `baseline_windows`.
    alpha: f64,
    new_types: u64,
    validation_failures: u64,
    foreign_reads: u64,
    officer_commands: u64,
    officer_hours: Option<Hours>,
    handshake_failures: u64,
    authorization_failures: u64,
    max_tracked: usize,
    subjects: HashMap<String, SubjectTrack>,
    sources: HashMap<IpAddr, SourceTrack>,
}

/// Forgets the stalest tenth of `map` when it is full, so that inserting stays cheap on average.
fn make_room<K: Clone + Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    last_seen: impl Fn(&V) -> Instant,
) {
    if map.len() < max {
        return;
    }
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, v)| (last_seen(v), k.clone())).collect();
    ages.sort_by_key(|(at, _)| *at);
    for (_, k) in ages.into_iter().take((max / 10).max(1)) {
        map.remove(&k);
    }
}

impl Detector {
    /// Detectors with the thresholds of `config` (checked by [`RiskSection::problem`]).
    pub fn new(config: &RiskSection) -> Detector {
        Detector {
            window: Duration::from_secs(config.window_seconds.max(1)),
            rate_factor: f64::from(config.rate_factor),
            rate_min: config.rate_min,
            alpha: 1.0 / f64::from(config.baseline_windows.max(1)),
            new_types: u64::from(config.new_types),
            validation_failures: config.validation_failures,
            foreign_reads: config.foreign_reads,
            officer_commands: config.officer_commands,
            officer_hours: config
                .officer_hours
                .as_deref()
                .and_then(|h| Hours::parse(h).ok()),
            handshake_failures: config.handshake_failures,
            authorization_failures: config.authorization_failures,
            max_tracked: config.max_tracked.max(1),
            subjects: HashMap::new(),
            sources: HashMap::new(),
        }
    }

    fn subject(&mut self, name: &str, now: Instant) -> &mut SubjectTrack {
        if !self.subjects.contains_key(name) {
            make_room(&mut self.subjects, self.max_tracked, |t| t.last_seen);
        }
        let track = self
            .subjects
            .entry(name.to_owned())
            .or_insert_with(|| SubjectTrack::new(now));
        track.last_seen = now;
        track
    }

    fn source(&mut self, address: IpAddr, now: Instant) -> &mut SourceTrack {
        if !self.sources.contains_key(&address) {
            make_room(&mut self.sources, self.max_tracked, |t| t.last_seen);
        }
        let track = self.sources.entry(address).or_insert_with(|| SourceTrack {
            last_seen: now,
            handshakes: Window::new(now),
            unauthorized: Window::new(now),
        });
        track.last_seen = now;
        track
    }

    /// Takes in one observation at `now`; answers the alarm it raises, if any.
    pub fn observe(&mut self, seen: Observation<'_>, now: Instant) -> Option<Alarm> {
        let window = self.window;
        let subject_alarm = |kind, name: &str, evidence| Alarm {
            kind,
            who: Who::Subject(name.to_owned()),
            evidence,
        };
        match seen {
            Observation::Submitted {
                subject,
                record_type,
            } => self.submitted(subject, record_type, now),
            Observation::Invalid { subject } => {
                let threshold = self.validation_failures;
                let t = self.subject(subject, now);
                t.invalid.crosses(now, window, threshold).then(|| {
                    subject_alarm(
                        AlarmKind::ValidationFailures,
                        subject,
                        vec![("invalid_in_window", t.invalid.count)],
                    )
                })
            }
            Observation::ForeignRead { subject } => {
                let threshold = self.foreign_reads;
                let t = self.subject(subject, now);
                t.foreign.crosses(now, window, threshold).then(|| {
                    subject_alarm(
                        AlarmKind::ForeignReads,
                        subject,
                        vec![("foreign_reads_in_window", t.foreign.count)],
                    )
                })
            }
            Observation::OfficerCommand {
                officer,
                minute_of_day,
            } => {
                let (threshold, hours) = (self.officer_commands, self.officer_hours);
                let t = self.subject(officer, now);
                if t.officer.crosses(now, window, threshold) {
                    return Some(subject_alarm(
                        AlarmKind::OfficerRate,
                        officer,
                        vec![("commands_in_window", t.officer.count)],
                    ));
                }
                let outside = hours.is_some_and(|h| !h.contains(minute_of_day));
                (outside && t.off_hours.crosses(now, window, 1)).then(|| {
                    subject_alarm(
                        AlarmKind::OfficerOffHours,
                        officer,
                        vec![("minute_of_day_utc", u64::from(minute_of_day))],
                    )
                })
            }
            Observation::HandshakeFailed { source } => {
                let threshold = self.handshake_failures;
                let t = self.source(source, now);
                t.handshakes.crosses(now, window, threshold).then(|| Alarm {
                    kind: AlarmKind::HandshakeFailures,
                    who: Who::Source(source),
                    evidence: vec![("failed_handshakes_in_window", t.handshakes.count)],
                })
            }
            Observation::Unauthorized { source } => {
                let threshold = self.authorization_failures;
                let t = self.source(source, now);
                t.unauthorized
                    .crosses(now, window, threshold)
                    .then(|| Alarm {
                        kind: AlarmKind::AuthorizationFailures,
                        who: Who::Source(source),
                        evidence: vec![("refused_requests_in_window", t.unauthorized.count)],
                    })
            }
        }
    }

    fn submitted(&mut self, subject: &str, record_type: &str, now: Instant) -> Option<Alarm> {
        let (window, alpha, factor, min, new_types) = (
            self.window,
            self.alpha,
            self.rate_factor,
            self.rate_min,
            self.new_types,
        );
        let t = self.subject(subject, now);
        // The baseline learns each ended window, and the empty windows after it.
        let (ended, last) = t.submissions.roll(now, window);
        if ended > 0 {
            t.has_history = true;
            #[allow(clippy::cast_precision_loss)]
            let last = last as f64;
            t.baseline += alpha * (last - t.baseline);
            for _ in 1..ended.min(1000) {
                t.baseline -= alpha * t.baseline;
            }
        }
        t.submissions.count += 1;
        let count = t.submissions.count;
        #[allow(clippy::cast_precision_loss)]
        let burst = count >= min && (count as f64) > factor * t.baseline;
        if burst && !t.submissions.fired {
            t.submissions.fired = true;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let baseline = t.baseline.round() as u64;
            return Some(Alarm {
                kind: AlarmKind::SubmissionBurst,
                who: Who::Subject(subject.to_owned()),
                evidence: vec![
                    ("submissions_in_window", count),
                    ("baseline_per_window", baseline),
                ],
            });
        }
        if t.known_types.contains(record_type) || t.known_types.len() >= MAX_TYPES {
            return None;
        }
        t.known_types.insert(record_type.to_owned());
        if !t.has_history {
            // A new subject's first window teaches its types.
            return None;
        }
        t.new_types
            .crosses(now, window, new_types.saturating_add(1))
            .then(|| Alarm {
                kind: AlarmKind::TypeSpread,
                who: Who::Subject(subject.to_owned()),
                evidence: vec![("new_types_in_window", t.new_types.count)],
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RiskSection {
        RiskSection {
            window_seconds: 10,
            rate_factor: 4,
            rate_min: 20,
            baseline_windows: 4,
            new_types: 1,
            validation_failures: 5,
            foreign_reads: 5,
            officer_commands: 3,
            officer_hours: Some("08:00-18:00".into()),
            handshake_failures: 5,
            authorization_failures: 5,
            max_tracked: 50,
            ..RiskSection::default()
        }
    }

    fn submit_n(d: &mut Detector, n: u64, at: Instant) -> Vec<Alarm> {
        (0..n)
            .filter_map(|_| {
                d.observe(
                    Observation::Submitted {
                        subject: "bank-a",
                        record_type: "loan",
                    },
                    at,
                )
            })
            .collect()
    }

    #[test]
    fn a_burst_far_above_the_subjects_own_baseline_raises_one_alarm_per_window() {
        let mut d = Detector::new(&config());
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        // A steady 10 per window for eight windows: the baseline learns ~10, no alarm.
        for i in 0..8 {
            assert!(submit_n(&mut d, 10, t0 + w * i).is_empty());
        }
        // 39 in one window: under 4 × 10; 41: over it, one alarm however many more come.
        let at = t0 + w * 8;
        assert!(submit_n(&mut d, 30, at).is_empty());
        let alarms = submit_n(&mut d, 30, at);
        assert_eq!(alarms.len(), 1);
        assert_eq!(alarms[0].kind, AlarmKind::SubmissionBurst);
        assert_eq!(alarms[0].who, Who::Subject("bank-a".into()));
        // The 36th: over 4 × 8.99 (the baseline after eight windows of 10, averaged over four).
        assert_eq!(alarms[0].evidence[0], ("submissions_in_window", 36));
    }

    #[test]
    fn a_quiet_subject_needs_the_minimum_before_a_burst() {
        let mut d = Detector::new(&config());
        let t0 = Instant::now();
        assert!(submit_n(&mut d, 19, t0).is_empty());
        assert_eq!(submit_n(&mut d, 1, t0).len(), 1, "the 20th, from nothing");
    }

    #[test]
    fn new_record_types_after_the_first_window_spread() {
        let mut d = Detector::new(&config());
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut send = |t: &str, at| {
            d.observe(
                Observation::Submitted {
                    subject: "bank-a",
                    record_type: t,
                },
                at,
            )
        };
        // The first window teaches any number of types.
        for t in ["a", "b", "c"] {
            assert!(send(t, t0).is_none());
        }
        // Later, one new type is allowed per window; the second raises the alarm.
        assert!(send("d", t0 + w).is_none());
        assert_eq!(send("e", t0 + w).unwrap().kind, AlarmKind::TypeSpread);
        assert!(send("a", t0 + w).is_none(), "known types are never new");
    }

    #[test]
    fn counted_bursts_per_subject_and_per_source() {
        let mut d = Detector::new(&config());
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let kinds = |d: &mut Detector, o: Observation<'_>, n: usize| -> Vec<AlarmKind> {
            (0..n)
                .filter_map(|_| d.observe(o, t0))
                .map(|a| a.kind)
                .collect()
        };
        assert_eq!(
            kinds(&mut d, Observation::HandshakeFailed { source: a }, 4),
            vec![]
        );
        assert_eq!(
            kinds(&mut d, Observation::HandshakeFailed { source: b }, 4),
            vec![],
            "per source"
        );
        assert_eq!(
            kinds(&mut d, Observation::HandshakeFailed { source: a }, 10),
            vec![AlarmKind::HandshakeFailures]
        );
        assert_eq!(
            kinds(&mut d, Observation::Unauthorized { source: b }, 5),
            vec![AlarmKind::AuthorizationFailures]
        );
        assert_eq!(
            kinds(&mut d, Observation::Invalid { subject: "x" }, 5),
            vec![AlarmKind::ValidationFailures]
        );
        assert_eq!(
            kinds(&mut d, Observation::ForeignRead { subject: "x" }, 5),
            vec![AlarmKind::ForeignReads]
        );
        // The next window counts again.
        let later = t0 + Duration::from_secs(10);
        let again: Vec<_> = (0..5)
            .filter_map(|_| d.observe(Observation::HandshakeFailed { source: a }, later))
            .collect();
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn officers_outside_their_hours_or_too_fast() {
        let mut d = Detector::new(&config());
        let t0 = Instant::now();
        let cmd = |minute| Observation::OfficerCommand {
            officer: "officer",
            minute_of_day: minute,
        };
        assert!(d.observe(cmd(9 * 60), t0).is_none());
        assert_eq!(
            d.observe(cmd(23 * 60), t0).unwrap().kind,
            AlarmKind::OfficerOffHours
        );
        assert_eq!(
            d.observe(cmd(10 * 60), t0).unwrap().kind,
            AlarmKind::OfficerRate,
            "the third command in one window"
        );
    }

    #[test]
    fn a_flood_of_addresses_is_bounded() {
        let mut d = Detector::new(&config());
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let source = IpAddr::from(std::net::Ipv4Addr::from(i));
            d.observe(Observation::HandshakeFailed { source }, t0);
        }
        assert!(d.sources.len() <= 50);
    }
}

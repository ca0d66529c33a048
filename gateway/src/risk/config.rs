//! The `risk:` section of `gateway.yaml`: the detectors' thresholds and the responses, with the
//! documented defaults (docs/risk.md).

use serde::Deserialize;

/// Thresholds of the anomaly detectors and what the node does when one fires.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSection {
    /// Seconds of one counting window: every detector counts events per window.
    pub window_seconds: u64,
    /// A subject's submissions in one window raise `submission_burst` when they exceed
    /// `rate_factor` × the subject's moving baseline (its average per window)…
    pub rate_factor: u32,
    /// …and are at least this many (so a quiet subject's first records raise nothing).
    pub rate_min: u64,
    /// Windows the moving baseline averages over (an exponential moving average of this span).
    pub baseline_windows: u32,
    /// Record types a subject submits in one window that it had not submitted before, beyond which
    /// `type_spread` is raised.
    pub new_types: u32,
    /// A subject's submissions refused as invalid in one window: `validation_failures`.
    pub validation_failures: u64,
    /// A subject's reads of records another provider submitted (sealed values read in clear
    /// included) in one window: `foreign_reads`.
    pub foreign_reads: u64,
    /// An officer's commands in one window: `officer_rate`.
    pub officer_commands: u64,
    /// Hours (UTC, `HH:MM-HH:MM`) in which officers work; a command outside them raises
    /// `officer_off_hours`. Absent: any hour.
    pub officer_hours: Option<String>,
    /// Failed TLS handshakes from one source address in one window: `handshake_failures`, and the
    /// address is blocked.
    pub handshake_failures: u64,
    /// Requests refused as unauthorized (401/403) from one source address in one window:
    /// `authorization_failures`, and the address is blocked.
    pub authorization_failures: u64,
    /// Seconds a source address stays blocked (refused at accept).
    pub block_seconds: u64,
    /// Quarantine a subject at once when a high-severity alarm names it.
    pub auto_quarantine: bool,
    /// Most source addresses and subjects the detectors track at once; beyond it the stalest are
    /// forgotten (a flood of addresses cannot grow the node's memory).
    pub max_tracked: usize,
}

impl Default for RiskSection {
    fn default() -> Self {
        RiskSection {
            window_seconds: 60,
            rate_factor: 5,
            rate_min: 600,
            baseline_windows: 30,
            new_types: 3,
            validation_failures: 50,
            foreign_reads: 200,
            officer_commands: 30,
            officer_hours: None,
            handshake_failures: 50,
            authorization_failures: 50,
            block_seconds: 600,
            auto_quarantine: false,
            max_tracked: 10_000,
        }
    }
}

/// Working hours as minutes of the day (UTC): `[from, to)`, wrapping past midnight when
/// `from > to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    from: u32,
    to: u32,
}

impl Hours {
    /// Reads `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Hours, String> {
        let minutes = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (from, to) = text
            .split_once('-')
            .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)))
            .ok_or_else(|| format!("risk.officer_hours: `{text}` is not HH:MM-HH:MM (UTC)"))?;
        Ok(Hours { from, to })
    }

    /// Whether `minute` of the day (UTC) is inside.
    pub fn contains(&self, minute: u32) -> bool {
        if self.from <= self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}

impl RiskSection {
    /// What is wrong with these settings, if anything.
    pub fn problem(&self) -> Option<String> {
        let at_least_one = [
            ("window_seconds", self.window_seconds),
            ("rate_factor", u64::from(self.rate_factor)),
            ("rate_min", self.rate_min),
            ("validation_failures", self.validation_failures),
            ("foreign_reads", self.foreign_reads),
            ("officer_commands", self.officer_commands),
            ("handshake_failures", self.handshake_failures),
            ("authorization_failures", self.authorization_failures),
            ("block_seconds", self.block_seconds),
            (
                "max_tracked",
                u64::try_from(self.max_tracked).unwrap_or(u64::MAX),
            ),
            ("baseline_windows", u64::from(self.baseline_windows)),
        ];
        if let Some((name, _)) = at_least_one.iter().find(|(_, v)| *v == 0) {
            return Some(format!("risk.{name} must be at least 1"));
        }
        self.officer_hours
            .as_deref()
            .and_then(|h| Hours::parse(h).err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_wrap_past_midnight() {
        let day = Hours::parse("07:00-20:00").unwrap();
        assert!(day.contains(7 * 60) && day.contains(19 * 60 + 59));
        assert!(!day.contains(20 * 60) && !day.contains(3 * 60));
        let night = Hours::parse("22:00-06:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(60) && !night.contains(12 * 60));
        assert!(Hours::parse("7-20").is_err());
        assert!(Hours::parse("24:00-01:00").is_err());
    }

    #[test]
    fn the_defaults_are_sound_and_zero_is_named() {
        assert_eq!(RiskSection::default().problem(), None);
        let bad = RiskSection {
            block_seconds: 0,
            ..RiskSection::default()
        };
        assert_eq!(
            bad.problem().as_deref(),
            Some("risk.block_seconds must be at least 1")
        );
    }
}

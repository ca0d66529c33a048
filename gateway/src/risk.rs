//! Risk control (docs/risk.md): per-subject rate limits (`limiter`), anomaly detectors that are pure
//! functions of what was observed and `now` (`detect`), and the responses to their alarms — logs,
//! metrics, the recent-alarms list, audit entries, blocking a source address, quarantining a
//! subject (`sentinel`, `quarantine`). Thresholds come from `gateway.yaml`'s `risk:` (`config`).

pub mod config;
pub mod detect;
mod limiter;
pub mod quarantine;
pub mod sentinel;

pub use config::RiskSection;
pub use detect::Observation;
pub use limiter::RateLimiter;
pub use sentinel::Sentinel;

//! The life of a key version (NIST SP 800-57 / KMIP: active, deactivated, compromised, destroyed) as a
//! pure state machine: every transition takes `now` and the actor, and either returns the new state or
//! says why not, changing nothing.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch (UTC).
pub type Timestamp = i64;

/// Why a version was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    /// Its secret is, or may be, known to someone else.
    Compromised,
    /// Replaced by a newer version.
    Superseded,
    /// No longer needed.
    Retired,
}

impl RevocationReason {
    /// Parses the command-line spelling.
    pub fn parse(text: &str) -> Option<RevocationReason> {
        match text {
            "compromised" => Some(RevocationReason::Compromised),
            "superseded" => Some(RevocationReason::Superseded),
            "retired" => Some(RevocationReason::Retired),
            _ => None,
        }
    }
}

/// The state of one version. Each state carries what happened to get there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VersionState {
    /// Usable: for new work when it is the key's primary, else for verify/decrypt.
    Active,
    /// Verify/decrypt only: rotated away from, or revoked as superseded or retired.
    Deactivated {
        /// When.
        at: Timestamp,
        /// Who.
        by: String,
        /// Why, when it was revoked rather than rotated away from.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<RevocationReason>,
    },
    /// Known or suspected to be in other hands. Never used for new work; signatures it made at or after
    /// `occurred_at` are not to be believed.
    Compromised {
        /// When the compromise happened (may be before it was found).
        occurred_at: Timestamp,
        /// When it was revoked.
        revoked_at: Timestamp,
        /// Who revoked it.
        by: String,
    },
    /// To be destroyed once `after` has passed, unless cancelled.
    DestroyScheduled {
        /// Earliest destruction time.
        after: Timestamp,
        /// Who scheduled it.
        by: String,
        /// The state to return to on cancellation.
        from: Box<VersionState>,
    },
    /// Its material is gone.
    Destroyed {
        /// When.
        at: Timestamp,
        /// Who.
        by: String,
    },
}

/// Why a transition is not allowed. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransitionError {
    /// The version's material is already destroyed.
    #[error("version {0} is destroyed")]
    Destroyed(u32),
    /// A compromised version stays compromised.
    #[error("version {0} is compromised and cannot be un-compromised")]
    Uncompromise(u32),
    /// Already revoked as compromised.
    #[error("version {0} is already revoked as compromised")]
    AlreadyCompromised(u32),
    /// The compromise cannot have happened in the future.
    #[error("the compromise time is in the future")]
    FutureCompromise,
    /// Destruction is pending; cancel it first.
    #[error("version {0} is scheduled for destruction; cancel that first")]
    DestroyPending(u32),
    /// Nothing is scheduled.
    #[error("version {0} is not scheduled for destruction")]
    NotScheduled(u32),
    /// The destruction window has not passed.
    #[error("version {version} may not be destroyed before {after}")]
    WindowOpen {
        /// The version.
        version: u32,
        /// RFC 3339 time the window ends.
        after: String,
    },
    /// Destroying the version new work uses needs `--force`.
    #[error("version {0} is the primary of a key in use; rotate first, or pass --force")]
    PrimaryInUse(u32),
}

/// Formats a timestamp as RFC 3339 UTC.
pub fn rfc3339(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

impl VersionState {
    /// The short name shown in tables.
    pub fn name(&self) -> &'static str {
        match self {
            VersionState::Active => "active",
            VersionState::Deactivated { .. } => "deactivated",
            VersionState::Compromised { .. } => "compromised",
            VersionState::DestroyScheduled { .. } => "destroy-scheduled",
            VersionState::Destroyed { .. } => "destroyed",
        }
    }

    /// After a rotation away from this version.
    pub fn deactivate(
        &self,
        version: u32,
        now: Timestamp,
        by: &str,
    ) -> Result<VersionState, TransitionError> {
        match self {
            VersionState::Active => Ok(VersionState::Deactivated {
                at: now,
                by: by.to_owned(),
                reason: None,
            }),
            VersionState::Destroyed { .. } => Err(TransitionError::Destroyed(version)),
            other => Ok(other.clone()), // already out of new work
        }
    }

    /// Revokes the version.
    pub fn revoke(
        &self,
        version: u32,
        reason: RevocationReason,
        occurred_at: Timestamp,
        now: Timestamp,
        by: &str,
    ) -> Result<VersionState, TransitionError> {
        match (self, reason) {
            (VersionState::Destroyed { .. }, _) => Err(TransitionError::Destroyed(version)),
            (VersionState::DestroyScheduled { .. }, _) => {
                Err(TransitionError::DestroyPending(version))
            }
            (VersionState::Compromised { .. }, RevocationReason::Compromised) => {
                Err(TransitionError::AlreadyCompromised(version))
            }
            (VersionState::Compromised { .. }, _) => Err(TransitionError::Uncompromise(version)),
            (_, RevocationReason::Compromised) if occurred_at > now => {
                Err(TransitionError::FutureCompromise)
            }
            (_, RevocationReason::Compromised) => Ok(VersionState::Compromised {
                occurred_at,
                revoked_at: now,
                by: by.to_owned(),
            }),
            (_, reason) => Ok(VersionState::Deactivated {
                at: now,
                by: by.to_owned(),
                reason: Some(reason),
            }),
        }
    }

    /// Schedules destruction after `window` seconds. `is_primary_in_use` needs `force`.
    pub fn schedule_destroy(
        &self,
        version: u32,
        window: i64,
        now: Timestamp,
        by: &str,
        is_primary_in_use: bool,
        force: bool,
    ) -> Result<VersionState, TransitionError> {
        match self {
            VersionState::Destroyed { .. } => Err(TransitionError::Destroyed(version)),
            VersionState::DestroyScheduled { .. } => Err(TransitionError::DestroyPending(version)),
            _ if is_primary_in_use && !force => Err(TransitionError::PrimaryInUse(version)),
            other => Ok(VersionState::DestroyScheduled {
                after: now.saturating_add(window),
                by: by.to_owned(),
                from: Box::new(other.clone()),
            }),
        }
    }

    /// Cancels a scheduled destruction.
    pub fn cancel_destroy(&self, version: u32) -> Result<VersionState, TransitionError> {
        match self {
            VersionState::DestroyScheduled { from, .. } => Ok((**from).clone()),
            VersionState::Destroyed { .. } => Err(TransitionError::Destroyed(version)),
            _ => Err(TransitionError::NotScheduled(version)),
        }
    }

    /// Destroys the version once its window has passed (`immediately` skips the window: shredding).
    pub fn destroy(
        &self,
        version: u32,
        now: Timestamp,
        by: &str,
        immediately: bool,
    ) -> Result<VersionState, TransitionError> {
        match self {
            VersionState::Destroyed { .. } => Err(TransitionError::Destroyed(version)),
            VersionState::DestroyScheduled { after, .. } if now < *after && !immediately => {
                Err(TransitionError::WindowOpen {
                    version,
                    after: rfc3339(*after),
                })
            }
            VersionState::DestroyScheduled { .. } => Ok(VersionState::Destroyed {
                at: now,
                by: by.to_owned(),
            }),
            _ if immediately => Ok(VersionState::Destroyed {
                at: now,
                by: by.to_owned(),
            }),
            _ => Err(TransitionError::NotScheduled(version)),
        }
    }

    /// Whether the version's signatures (or ciphertexts) made at `made_at` may be believed.
    pub fn trusted_at(&self, made_at: Timestamp) -> bool {
        match self {
            VersionState::Compromised { occurred_at, .. } => made_at < *occurred_at,
            VersionState::Destroyed { .. } => false,
            VersionState::DestroyScheduled { from, .. } => from.trusted_at(made_at),
            VersionState::Active | VersionState::Deactivated { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RevocationReason::*;

    #[test]
    fn compromise_is_forever_and_dates_back() {
        let s = VersionState::Active
            .revoke(1, Compromised, 100, 200, "o")
            .unwrap();
        assert!(!s.trusted_at(150) && s.trusted_at(99));
        assert_eq!(
            s.revoke(1, Retired, 0, 300, "o"),
            Err(TransitionError::Uncompromise(1))
        );
        assert_eq!(
            s.revoke(1, Compromised, 0, 300, "o"),
            Err(TransitionError::AlreadyCompromised(1))
        );
        assert_eq!(
            VersionState::Active.revoke(1, Compromised, 201, 200, "o"),
            Err(TransitionError::FutureCompromise)
        );
    }

    #[test]
    fn destruction_waits_for_its_window_and_can_be_cancelled() {
        let s = VersionState::Active
            .schedule_destroy(2, 60, 1000, "o", false, false)
            .unwrap();
        assert!(matches!(
            s.destroy(2, 1059, "o", false),
            Err(TransitionError::WindowOpen { version: 2, .. })
        ));
        assert_eq!(s.cancel_destroy(2), Ok(VersionState::Active));
        let d = s.destroy(2, 1060, "o", false).unwrap();
        assert_eq!(
            d,
            VersionState::Destroyed {
                at: 1060,
                by: "o".into()
            }
        );
        assert_eq!(
            d.revoke(2, Compromised, 0, 2000, "o"),
            Err(TransitionError::Destroyed(2))
        );
        assert_eq!(d.cancel_destroy(2), Err(TransitionError::Destroyed(2)));
    }

    #[test]
    fn the_primary_in_use_needs_force() {
        assert_eq!(
            VersionState::Active.schedule_destroy(3, 0, 0, "o", true, false),
            Err(TransitionError::PrimaryInUse(3))
        );
        assert!(
            VersionState::Active
                .schedule_destroy(3, 0, 0, "o", true, true)
                .is_ok()
        );
    }
}

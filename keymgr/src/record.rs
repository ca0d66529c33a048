//! A named key: its versions, which one is primary, and the key-level rules (rotation, revocation,
//! destruction, expiry) built on the version state machine. Pure: no storage, no clock.

use serde::{Deserialize, Serialize};

use crate::lifecycle::{RevocationReason, Timestamp, VersionState};
use crate::purpose::Purpose;

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// 1, 2, …
    pub version: u32,
    /// When it was made (and activated: versions are made active).
    pub created_at: Timestamp,
    /// Who made it.
    pub created_by: String,
    /// Its state now.
    pub state: VersionState,
    /// Every earlier state, oldest first: with `state` and `created_*`, each version keeps when and by
    /// whom it was activated, deactivated, revoked, scheduled for destruction and destroyed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<VersionState>,
    /// The public half (hex), for Ed25519 and X25519 keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The material wrapped under the KEK (base64); gone once destroyed. Never leaves the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wrapped: Option<String>,
    /// For a key made in the PKCS#11 token: its `CKA_ID` (hex). The private half never leaves the
    /// token; gone once destroyed (the token's objects are destroyed first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token_id: Option<String>,
}

/// A named key and all its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub purpose: Purpose,
    /// Rotate after this many seconds (the gateway does it when due).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotate_every: Option<u64>,
    /// A version older than this many seconds is refused for new work: no key is valid forever.
    pub max_age: u64,
    /// The version new work uses, if any may be used.
    pub primary: Option<u32>,
    /// When the key was created.
    pub created_at: Timestamp,
    /// Who created it.
    pub created_by: String,
    /// Every version, oldest first.
    pub versions: Vec<VersionRecord>,
}

/// Why a key cannot be used for new work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UseError {
    /// No version may be used: the primary was revoked or destroyed. An officer must rotate.
    #[error("key `{0}` has no usable version (revoked or destroyed); rotate it")]
    NoUsableVersion(String),
    /// The primary is older than the key's maximum age.
    #[error("key `{name}` version {version} expired at {at}; rotate it")]
    Expired {
        /// The key.
        name: String,
        /// The version.
        version: u32,
        /// RFC 3339 time it expired.
        at: String,
    },
}

impl VersionRecord {
    /// Whether its private key is held in the PKCS#11 token (it signs there and never leaves it).
    pub fn in_token(&self) -> bool {
        self.token_id.is_some()
    }

    /// Moves to `next`, keeping the current state in the history.
    fn set(&mut self, next: VersionState) {
        if next != self.state {
            let previous = std::mem::replace(&mut self.state, next);
            self.history.push(previous);
        }
    }
}

impl KeyRecord {
    /// A new key whose version 1 is primary.
    pub(crate) fn new(
        name: &str,
        purpose: Purpose,
        rotate_every: Option<u64>,
        max_age: u64,
        first: VersionRecord,
    ) -> KeyRecord {
        KeyRecord {
            name: name.to_owned(),
            purpose,
            rotate_every,
            max_age,
            primary: Some(first.version),
            created_at: first.created_at,
            created_by: first.created_by.clone(),
            versions: vec![first],
        }
    }

    /// A version by number.
    pub fn version(&self, v: u32) -> Option<&VersionRecord> {
        self.versions.iter().find(|x| x.version == v)
    }

    fn version_mut(&mut self, v: u32) -> Result<&mut VersionRecord, crate::Error> {
        let name = self.name.clone();
        self.versions
            .iter_mut()
            .find(|x| x.version == v)
            .ok_or(crate::Error::NoSuchVersion { name, version: v })
    }

    /// Whether every version is destroyed.
    pub fn destroyed(&self) -> bool {
        self.versions
            .iter()
            .all(|v| matches!(v.state, VersionState::Destroyed { .. }))
    }

    /// The next version number.
    pub(crate) fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }

    /// Makes `new` the primary; the old primary is deactivated. A key whose every version is
    /// destroyed (a shredded subject, a retired key) may be rotated too: the new version is fresh
    /// material, and nothing destroyed comes back.
    pub(crate) fn rotate(
        &mut self,
        new: VersionRecord,
        now: Timestamp,
        by: &str,
    ) -> Result<(), crate::Error> {
        if let Some(p) = self.primary {
            let v = self.version_mut(p)?;
            let next = v.state.deactivate(p, now, by)?;
            v.set(next);
        }
        self.primary = Some(new.version);
        self.versions.push(new);
        Ok(())
    }

    /// Revokes a version; a revoked primary leaves the key without one until it is rotated.
    pub(crate) fn revoke(
        &mut self,
        version: u32,
        reason: RevocationReason,
        occurred_at: Timestamp,
        now: Timestamp,
        by: &str,
    ) -> Result<(), crate::Error> {
        let v = self.version_mut(version)?;
        let next = v.state.revoke(version, reason, occurred_at, now, by)?;
        v.set(next);
        if self.primary == Some(version) {
            self.primary = None;
        }
        Ok(())
    }

    /// Schedules a version's destruction.
    pub(crate) fn schedule_destroy(
        &mut self,
        version: u32,
        window: u64,
        force: bool,
        now: Timestamp,
        by: &str,
    ) -> Result<(), crate::Error> {
        let in_use = self.primary == Some(version);
        let window = i64::try_from(window).unwrap_or(i64::MAX);
        let v = self.version_mut(version)?;
        let next = v
            .state
            .schedule_destroy(version, window, now, by, in_use, force)?;
        v.set(next);
        if in_use {
            self.primary = None;
        }
        Ok(())
    }

    /// Cancels a scheduled destruction; a version that was active becomes primary again if the key has
    /// none.
    pub(crate) fn cancel_destroy(&mut self, version: u32) -> Result<(), crate::Error> {
        let has_primary = self.primary.is_some();
        let v = self.version_mut(version)?;
        let next = v.state.cancel_destroy(version)?;
        v.set(next);
        if v.state == VersionState::Active && !has_primary {
            self.primary = Some(version);
        } else if v.state == VersionState::Active {
            // Another version became primary meanwhile: this one returns for verify/decrypt only.
            let next = VersionState::Deactivated {
                at: v.created_at,
                by: v.created_by.clone(),
                reason: None,
            };
            v.set(next);
        }
        Ok(())
    }

    /// Destroys a version and erases its wrapped material.
    pub(crate) fn destroy(
        &mut self,
        version: u32,
        now: Timestamp,
        by: &str,
        immediately: bool,
    ) -> Result<(), crate::Error> {
        let v = self.version_mut(version)?;
        let next = v.state.destroy(version, now, by, immediately)?;
        v.set(next);
        v.wrapped = None;
        v.token_id = None;
        if self.primary == Some(version) {
            self.primary = None;
        }
        Ok(())
    }

    /// The version new work must use now.
    pub fn usable(&self, now: Timestamp) -> Result<&VersionRecord, UseError> {
        let v = self
            .primary
            .and_then(|p| self.version(p))
            .filter(|v| v.state == VersionState::Active)
            .ok_or_else(|| UseError::NoUsableVersion(self.name.clone()))?;
        let expires = self.expires_at(v);
        if now >= expires {
            return Err(UseError::Expired {
                name: self.name.clone(),
                version: v.version,
                at: crate::lifecycle::rfc3339(expires),
            });
        }
        Ok(v)
    }

    /// When a version stops being usable for new work.
    pub fn expires_at(&self, v: &VersionRecord) -> Timestamp {
        v.created_at
            .saturating_add(i64::try_from(self.max_age).unwrap_or(i64::MAX))
    }

    /// Whether the key is due for rotation: past its rotation period, or without a usable primary.
    pub fn due(&self, now: Timestamp) -> bool {
        if self.destroyed() {
            return false;
        }
        match self.usable(now) {
            Err(_) => true,
            Ok(v) => self.rotate_every.is_some_and(|every| {
                now >= v
                    .created_at
                    .saturating_add(i64::try_from(every).unwrap_or(i64::MAX))
            }),
        }
    }

    /// Whether a signature or ciphertext made by `version` at `made_at` may be believed.
    pub fn trusted_at(&self, version: u32, made_at: Timestamp) -> bool {
        self.version(version)
            .is_some_and(|v| v.state.trusted_at(made_at))
    }
}

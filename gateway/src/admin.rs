//! The admin API: security officers run keymgr's commands against the running node's key store, with
//! the same command and answer types as the local CLI (`keymgr::Command`, `keymgr::Outcome`). A change
//! takes effect before the command returns: the key manager drops its cache entry when the change
//! commits (keys resolved per request), and the ledger switches its checkpoint signer (the one key a
//! running component holds).

use policies::PeerIdentity;

use crate::pipeline::{Pipeline, PipelineError};

/// The role that may use the admin API.
pub const OFFICER_ROLE: &str = "security-officer";

/// Why an officer's command failed, or why the caller is not an officer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// Not a security officer (or no subject at all).
    #[error("{0}")]
    Forbidden(String),
    /// The key manager refused or failed.
    #[error(transparent)]
    Keys(#[from] keymgr::Error),
}

/// The officer's name for the audit trail, if `peer` is a security officer.
pub fn officer(pipeline: &Pipeline, peer: &PeerIdentity) -> Result<String, AdminError> {
    let policy = pipeline.policy();
    let subject = policy
        .identify(peer)
        .map_err(|e| AdminError::Forbidden(e.to_string()))?;
    if subject.roles.contains(OFFICER_ROLE) {
        Ok(subject.name.clone())
    } else {
        Err(AdminError::Forbidden(format!(
            "subject `{}` is not a security officer",
            subject.name
        )))
    }
}

/// Whether a command takes a key version out of use, and so must not interleave with a submission
/// between its key resolution and its append.
pub fn takes_version_out_of_use(command: &keymgr::Command) -> bool {
    use keymgr::Command as C;
    matches!(
        command,
        C::Revoke { .. } | C::ScheduleDestroy { .. } | C::Destroy { .. } | C::Shred { .. }
    )
}

/// Carries out `command` for the officer `actor`.
pub fn execute(
    pipeline: &Pipeline,
    command: keymgr::Command,
    actor: &str,
) -> Result<keymgr::Outcome, AdminError> {
    if matches!(command, keymgr::Command::Affected { .. }) {
        // The usage index follows the ledger; bring it up to date so the answer covers every record
        // acknowledged before the question.
        pipeline.index_usage().map_err(|e| {
            AdminError::Keys(keymgr::Error::Storage(format!("indexing key usage: {e}")))
        })?;
    }
    let changes_keys = !matches!(
        command,
        keymgr::Command::List { .. }
            | keymgr::Command::Show { .. }
            | keymgr::Command::Due
            | keymgr::Command::Affected { .. }
            | keymgr::Command::Audit { .. }
            | keymgr::Command::RevokedPeers
    );
    let outcome = keymgr::execute(pipeline.keys(), command, crate::keys::unix_now(), actor)?;
    if changes_keys {
        pipeline.refresh_signing().map_err(|e| {
            AdminError::Keys(keymgr::Error::Storage(format!(
                "the key store changed, but the ledger could not switch its checkpoint signer: {e}"
            )))
        })?;
    }
    Ok(outcome)
}

impl From<AdminError> for PipelineError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Forbidden(why) => PipelineError::Record(policies::RecordError {
                code: policies::RecordErrorCode::Forbidden,
                path: None,
                reason: why,
            }),
            AdminError::Keys(k) => PipelineError::Admin(k),
        }
    }
}

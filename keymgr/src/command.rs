//! Officer commands as data: what the CLI sends and gets back, the same whether the store is local or
//! behind a running gateway's admin API. Views never include key material, wrapped or not.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::audit::AuditEvent;
use crate::lifecycle::{RevocationReason, Timestamp, VersionState, rfc3339};
use crate::manager::KeyManager;
use crate::purpose::Purpose;
use crate::record::KeyRecord;

/// One officer command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case")]
pub enum Command {
    /// Every key.
    List,
    /// One key.
    Show {
        /// The key.
        name: String,
    },
    /// A new key.
    Create {
        /// The key.
        name: String,
        /// What it is for.
        purpose: Purpose,
        /// Rotation period, seconds.
        rotate_every: Option<u64>,
        /// Maximum age of a version, seconds.
        max_age: Option<u64>,
    },
    /// A new primary version.
    Rotate {
        /// The key.
        name: String,
    },
    /// Keys due for rotation.
    Due,
    /// Revokes a version.
    Revoke {
        /// The key.
        name: String,
        /// The version.
        version: u32,
        /// Why.
        reason: RevocationReason,
        /// When a compromise happened (default: now).
        occurred_at: Option<Timestamp>,
    },
    /// Schedules a version's destruction.
    ScheduleDestroy {
        /// The key.
        name: String,
        /// The version.
        version: u32,
        /// Seconds before it may be destroyed.
        window: u64,
        /// Allow it for the primary of a key in use.
        force: bool,
    },
    /// Cancels a scheduled destruction.
    CancelDestroy {
        /// The key.
        name: String,
        /// The version.
        version: u32,
    },
    /// Destroys a version whose window has passed.
    Destroy {
        /// The key.
        name: String,
        /// The version.
        version: u32,
    },
    /// Crypto-shreds a data subject's key.
    Shred {
        /// The data subject's id.
        subject: String,
    },
    /// Records that used a version.
    Affected {
        /// The key.
        name: String,
        /// The version.
        version: u32,
    },
    /// The audit trail.
    Audit,
}

/// A version as officers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    /// Number.
    pub version: u32,
    /// Short state name.
    pub state: String,
    /// Whether new work uses it.
    pub primary: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Who made it.
    pub created_by: String,
    /// RFC 3339: when it stops being usable for new work.
    pub expires_at: String,
    /// Public half, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The full state, with times (Unix seconds) and actors.
    pub detail: VersionState,
}

/// A key as officers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// Name.
    pub name: String,
    /// Purpose.
    pub purpose: Purpose,
    /// The primary version, if any may be used.
    pub primary: Option<u32>,
    /// Rotation period, seconds.
    pub rotate_every: Option<u64>,
    /// Maximum age, seconds.
    pub max_age: u64,
    /// Whether it is due for rotation now.
    pub due: bool,
    /// RFC 3339.
    pub created_at: String,
    /// Who created it.
    pub created_by: String,
    /// Its versions, oldest first.
    pub versions: Vec<VersionView>,
}

impl KeyView {
    /// The view of a record at `now`.
    pub fn of(r: &KeyRecord, now: Timestamp) -> KeyView {
        KeyView {
            name: r.name.clone(),
            purpose: r.purpose,
            primary: r.primary,
            rotate_every: r.rotate_every,
            max_age: r.max_age,
            due: r.due(now),
            created_at: rfc3339(r.created_at),
            created_by: r.created_by.clone(),
            versions: r
                .versions
                .iter()
                .map(|v| VersionView {
                    version: v.version,
                    state: v.state.name().to_owned(),
                    primary: r.primary == Some(v.version),
                    created_at: rfc3339(v.created_at),
                    created_by: v.created_by.clone(),
                    expires_at: rfc3339(r.expires_at(v)),
                    public_key: v.public_key.clone(),
                    detail: v.state.clone(),
                })
                .collect(),
        }
    }
}

/// What a command returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    /// Keys (list, due).
    Keys {
        /// The keys.
        keys: Vec<KeyView>,
    },
    /// One key after a change or a show.
    Key {
        /// The key.
        key: KeyView,
    },
    /// The records that used a version.
    Affected {
        /// The key.
        name: String,
        /// The version.
        version: u32,
        /// Record locators.
        records: Vec<String>,
    },
    /// The audit trail.
    Audit {
        /// Events, oldest first.
        events: Vec<AuditEvent>,
    },
}

/// Where commands are carried out.
pub trait Backend {
    /// Carries out `command` on behalf of `actor`.
    fn execute(&mut self, command: Command, actor: &str) -> Result<Outcome, Error>;
}

/// Carries out a command against an open store at time `now`.
pub fn execute(
    m: &KeyManager,
    command: Command,
    now: Timestamp,
    actor: &str,
) -> Result<Outcome, Error> {
    let key = |r: KeyRecord| Outcome::Key {
        key: KeyView::of(&r, now),
    };
    Ok(match command {
        Command::List => Outcome::Keys {
            keys: m.list()?.iter().map(|r| KeyView::of(r, now)).collect(),
        },
        Command::Due => Outcome::Keys {
            keys: m.due(now)?.iter().map(|r| KeyView::of(r, now)).collect(),
        },
        Command::Show { name } => key(m.show(&name)?),
        Command::Create {
            name,
            purpose,
            rotate_every,
            max_age,
        } => key(m.create(&name, purpose, rotate_every, max_age, now, actor)?),
        Command::Rotate { name } => key(m.rotate(&name, now, actor)?),
        Command::Revoke {
            name,
            version,
            reason,
            occurred_at,
        } => key(m.revoke(&name, version, reason, occurred_at, now, actor)?),
        Command::ScheduleDestroy {
            name,
            version,
            window,
            force,
        } => key(m.schedule_destroy(&name, version, window, force, now, actor)?),
        Command::CancelDestroy { name, version } => {
            key(m.cancel_destroy(&name, version, now, actor)?)
        }
        Command::Destroy { name, version } => key(m.destroy(&name, version, now, actor)?),
        Command::Shred { subject } => key(m.shred_subject(&subject, now, actor)?),
        Command::Affected { name, version } => Outcome::Affected {
            records: m.affected(&name, version)?,
            name,
            version,
        },
        Command::Audit => Outcome::Audit { events: m.audit()? },
    })
}

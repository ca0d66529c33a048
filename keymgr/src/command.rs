//! Officer commands as data: what the CLI sends and gets back, the same whether the store is local or
//! behind a running gateway's admin API. Views never include key material, wrapped or not.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::audit::AuditEvent;
use crate::lifecycle::{RevocationReason, Timestamp, VersionState, rfc3339};
use crate::manager::KeyManager;
use crate::peers::RevokedPeer;
use crate::purpose::Purpose;
use crate::record::KeyRecord;

/// One officer command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case")]
pub enum Command {
    /// Managed keys, or data-subject keys, one page at a time.
    List {
        /// Data-subject keys instead of managed keys.
        #[serde(default)]
        subjects: bool,
        /// Only keys of this purpose.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        purpose: Option<Purpose>,
        /// The page after this key name (the previous answer's `next`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Most keys in the page (default [`DEFAULT_PAGE`], at most [`crate::MAX_PAGE`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
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
    /// Records that used a version, one page at a time.
    Affected {
        /// The key.
        name: String,
        /// The version.
        version: u32,
        /// The page after this record locator (the previous answer's `next`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Most records in the page (default [`DEFAULT_PAGE`], at most [`crate::MAX_PAGE`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// The audit trail, one page at a time.
    Audit {
        /// The page after this sequence number (the previous answer's `next`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        /// Most events in the page (default [`DEFAULT_PAGE`], at most [`crate::MAX_PAGE`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Revokes another node's identity: the channel refuses it from now on.
    RevokePeer {
        /// The identity (Ed25519 public key), 64 hex digits.
        identity: String,
        /// Why.
        reason: RevocationReason,
    },
    /// The revoked peer identities.
    RevokedPeers,
}

impl Command {
    /// The verb, as the CLI spells it.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::List { .. } => "list",
            Command::Show { .. } => "show",
            Command::Create { .. } => "create",
            Command::Rotate { .. } => "rotate",
            Command::Due => "due",
            Command::Revoke { .. } => "revoke",
            Command::ScheduleDestroy { .. } => "schedule-destroy",
            Command::CancelDestroy { .. } => "cancel-destroy",
            Command::Destroy { .. } => "destroy",
            Command::Shred { .. } => "shred",
            Command::Affected { .. } => "affected",
            Command::Audit { .. } => "audit",
            Command::RevokePeer { .. } => "revoke-peer",
            Command::RevokedPeers => "revoked-peers",
        }
    }

    /// The key the command is about, if it names one; for a shred, the subject's key name (a hash),
    /// never the subject id: this is what logs may carry.
    pub fn key_name(&self) -> Option<String> {
        match self {
            Command::Show { name }
            | Command::Create { name, .. }
            | Command::Rotate { name }
            | Command::Revoke { name, .. }
            | Command::ScheduleDestroy { name, .. }
            | Command::CancelDestroy { name, .. }
            | Command::Destroy { name, .. }
            | Command::Affected { name, .. } => Some(name.clone()),
            Command::Shred { subject } => Some(crate::subjects::subject_key_name(subject)),
            Command::List { .. }
            | Command::Due
            | Command::Audit { .. }
            | Command::RevokePeer { .. }
            | Command::RevokedPeers => None,
        }
    }
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
    /// Whether the private key is held in the PKCS#11 token (made there, signs there, never leaves
    /// it) rather than wrapped in the key store.
    #[serde(default)]
    pub in_token: bool,
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
                    in_token: v.token_id.is_some(),
                    detail: v.state.clone(),
                })
                .collect(),
        }
    }
}

/// Items in a page when the command does not say.
pub const DEFAULT_PAGE: usize = 1000;

/// What a shred did, as officers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShredView {
    /// The subject's key name (a hash of the subject id: the id itself is not repeated).
    pub key: String,
    /// The versions destroyed now.
    pub destroyed: Vec<u32>,
    /// What that means.
    pub message: String,
}

/// What a command returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    /// Keys (list, due).
    Keys {
        /// The keys.
        keys: Vec<KeyView>,
        /// The cursor for the next page, if there may be one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// A shred.
    Shred {
        /// What it did.
        shred: ShredView,
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
        /// The cursor for the next page, if there may be one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// The audit trail.
    Audit {
        /// Events, oldest first.
        events: Vec<AuditEvent>,
        /// The cursor for the next page, if there may be one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<u64>,
    },
    /// Revoked peer identities (one after a revocation).
    Peers {
        /// The identities, in identity order.
        peers: Vec<RevokedPeer>,
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
        Command::List {
            subjects,
            purpose,
            after,
            limit,
        } => {
            let limit = page_size(limit);
            let filter = crate::KeyFilter { subjects, purpose };
            let keys = m.list(filter, after.as_deref(), limit)?;
            let next = (keys.len() == limit)
                .then(|| keys.last().map(|k| k.name.clone()))
                .flatten();
            Outcome::Keys {
                keys: keys.iter().map(|r| KeyView::of(r, now)).collect(),
                next,
            }
        }
        Command::Due => Outcome::Keys {
            keys: m.due(now)?.iter().map(|r| KeyView::of(r, now)).collect(),
            next: None,
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
        Command::Shred { subject } => {
            let s = m.shred_subject(&subject, now, actor)?;
            Outcome::Shred {
                shred: ShredView {
                    key: s.key,
                    destroyed: s.destroyed,
                    message: s.message,
                },
            }
        }
        Command::Affected {
            name,
            version,
            after,
            limit,
        } => {
            let limit = page_size(limit);
            let all = m.affected(&name, version)?;
            let start = after
                .and_then(|a| all.iter().position(|r| *r == a).map(|i| i + 1))
                .unwrap_or(0);
            let records: Vec<String> = all.into_iter().skip(start).take(limit).collect();
            let next = (records.len() == limit)
                .then(|| records.last().cloned())
                .flatten();
            Outcome::Affected {
                records,
                name,
                version,
                next,
            }
        }
        Command::Audit { after, limit } => {
            let limit = page_size(limit);
            let events = m.audit(after.unwrap_or(0), limit)?;
            let next = (events.len() == limit)
                .then(|| events.last().map(|e| e.seq))
                .flatten();
            Outcome::Audit { events, next }
        }
        Command::RevokePeer { identity, reason } => Outcome::Peers {
            peers: vec![m.revoke_peer(&identity, reason, now, actor)?],
        },
        Command::RevokedPeers => Outcome::Peers {
            peers: m.revoked_peers()?,
        },
    })
}

fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, crate::MAX_PAGE)
}

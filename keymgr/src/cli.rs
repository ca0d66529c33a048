//! Arguments, and the one place that turns a failure into one clear line and an exit code.

mod kek;
mod local;
mod remote;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use keymgr::{Backend as _, Command, Error, KekSource, Purpose, RevocationReason};

/// Ledgergate key management for security officers.
#[derive(Debug, Parser)]
#[command(name = "keymgr", version, about)]
pub(crate) struct Cli {
    /// The key store directory (the node must be stopped). Default: $LEDGERGATE_KEY_STORE.
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// Read the key-encryption key from this file (64 hex digits, mode 0600) instead of a passphrase
    /// ($LEDGERGATE_KEK_PASSPHRASE, or a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    kek_file: Option<PathBuf>,
    #[command(flatten)]
    pkcs11: kek::Pkcs11Args,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Who is acting, for the audit trail. Default: $LEDGERGATE_ACTOR, else $USER. (With --gateway the
    /// gateway records the officer named by the client certificate.)
    #[arg(long, global = true)]
    actor: Option<String>,
    /// Act on a running gateway's admin API (https://HOST[:PORT]) instead of a local store.
    #[arg(long, global = true, value_name = "URL", requires_all = ["cert", "key", "cacert"])]
    gateway: Option<String>,
    /// With --gateway: the officer's client certificate (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// With --gateway: its private key (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// With --gateway: the CA that signed the gateway's certificate (PEM).
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Create a new key store protected by a passphrase or a key file (made if missing).
    Init,
    /// List the managed keys (or, with --subjects, the data-subject keys), a page at a time.
    List {
        /// List data-subject keys (one per data subject: there can be millions) instead.
        #[arg(long)]
        subjects: bool,
        /// Only keys of this purpose.
        #[arg(long, value_parser = parse_purpose)]
        purpose: Option<Purpose>,
        /// Start after this key name (the `next` of the previous page).
        #[arg(long, value_name = "NAME")]
        after: Option<String>,
        /// Most keys to show (default 1000, at most 10000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one key and its versions.
    Show { name: String },
    /// Create a key; version 1 becomes primary.
    Create {
        name: String,
        /// node-identity, channel-static, checkpoint-signing, pseudonym or subject.
        #[arg(long, value_parser = parse_purpose)]
        purpose: Purpose,
        /// Rotation period (e.g. 30d, 12h); the gateway rotates when due.
        #[arg(long, value_parser = parse_duration)]
        rotate_every: Option<u64>,
        /// Longest a version may be used for new work (default 365d): no key is valid forever.
        #[arg(long, value_parser = parse_duration)]
        max_age: Option<u64>,
    },
    /// Make a new primary version; the old one stays for verify/decrypt only.
    Rotate { name: String },
    /// List keys due for rotation (past their period, expired, or with no usable version).
    Due,
    /// Revoke a version.
    Revoke {
        name: String,
        #[arg(long)]
        version: u32,
        /// compromised, superseded or retired.
        #[arg(long, value_parser = parse_reason)]
        reason: RevocationReason,
        /// When a compromise happened (RFC 3339); signatures made since are not believed. Default: now.
        #[arg(long, value_parser = parse_time)]
        occurred_at: Option<i64>,
    },
    /// Schedule a version's destruction after a waiting window.
    ScheduleDestroy {
        name: String,
        #[arg(long)]
        version: u32,
        /// How long to wait (e.g. 7d).
        #[arg(long, value_parser = parse_duration)]
        window: u64,
        /// Allow it for the primary of a key in use.
        #[arg(long)]
        force: bool,
    },
    /// Cancel a scheduled destruction.
    CancelDestroy {
        name: String,
        #[arg(long)]
        version: u32,
    },
    /// Destroy a version whose window has passed; its material is erased.
    Destroy {
        name: String,
        #[arg(long)]
        version: u32,
    },
    /// Crypto-shred a data subject: destroy its data key, so its sealed fields can never be read.
    Shred {
        #[arg(long)]
        subject: String,
    },
    /// List the records that used a key version, a page at a time.
    Affected {
        name: String,
        #[arg(long)]
        version: u32,
        /// Start after this record (the `next` of the previous page).
        #[arg(long, value_name = "RECORD")]
        after: Option<String>,
        /// Most records to show (default 1000, at most 10000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show the key store's journal of key operations, a page at a time; with `--ledger` (and
    /// `--gateway`), the node's audit trail in the ledger instead: every audit entry with its ledger
    /// index and inclusion proof.
    Audit {
        /// Start after this sequence number (the `next` of the previous page).
        #[arg(long, value_name = "SEQ", conflicts_with = "ledger")]
        after: Option<u64>,
        /// Most events to show (default 1000, at most 10000; with --ledger 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
        /// The audit trail in the node's ledger (`GET /admin/v1/audit`), not the key store's journal.
        #[arg(long)]
        ledger: bool,
        /// With --ledger: from this ledger index (the `next` of the previous page).
        #[arg(long, value_name = "INDEX", requires = "ledger")]
        start: Option<u64>,
        /// With --ledger: only entries by this actor.
        #[arg(long, requires = "ledger")]
        by: Option<String>,
        /// With --ledger: only entries of this kind or below it (`key` keeps `key.rotate`).
        #[arg(long, requires = "ledger")]
        kind: Option<String>,
        /// With --ledger: only entries at or after this time (RFC 3339).
        #[arg(long, requires = "ledger")]
        since: Option<String>,
        /// With --ledger: only entries before this time (RFC 3339).
        #[arg(long, requires = "ledger")]
        until: Option<String>,
    },
    /// Revoke another node's channel identity: the node refuses it at the handshake from now on and,
    /// when running, closes its sessions within a second. Permanent.
    RevokePeer {
        /// The identity: the peer's node-identity public key, 64 hex digits.
        identity: String,
        /// compromised, superseded or retired.
        #[arg(long, value_parser = parse_reason)]
        reason: RevocationReason,
    },
    /// List the revoked peer identities.
    RevokedPeers,
    /// Re-wrap every key under a new KEK, in one atomic write: a new passphrase
    /// ($LEDGERGATE_NEW_KEK_PASSPHRASE or a prompt), a key file, (with --to-pkcs11) a key in a
    /// PKCS#11 token, or (with --to-pkcs11-key) another key of the store's token. With --pkcs11-*
    /// and neither, moves a store off its token.
    #[command(alias = "change-kek")]
    ChangePassphrase {
        /// Switch to this key file (made if missing) instead of a new passphrase.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["to_pkcs11", "to_pkcs11_key"])]
        new_kek_file: Option<PathBuf>,
        /// Switch to the token the --pkcs11-* options name (its key is made if missing); the
        /// current KEK is the passphrase or --kek-file.
        #[arg(long, conflicts_with = "to_pkcs11_key")]
        to_pkcs11: bool,
        /// Rotate the KEK inside the store's token: switch to the key of this label there (made
        /// if missing); --pkcs11-* name the current one. Keys held in the token stay there.
        #[arg(long, value_name = "LABEL")]
        to_pkcs11_key: Option<String>,
    },
}

fn parse_purpose(s: &str) -> Result<Purpose, String> {
    Purpose::parse(s).ok_or_else(|| {
        "expected node-identity, channel-static, checkpoint-signing, pseudonym or subject"
            .to_owned()
    })
}

fn parse_reason(s: &str) -> Result<RevocationReason, String> {
    RevocationReason::parse(s)
        .ok_or_else(|| "expected compromised, superseded or retired".to_owned())
}

fn parse_duration(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{e} (e.g. 90d, 12h, 30m)"))
}

fn parse_time(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| "expected an RFC 3339 time, e.g. 2026-11-20T08:00:00Z".to_owned())
}

/// A failure: which step, and why.
struct Failure {
    step: &'static str,
    error: Error,
}

/// The command a verb stands for; `None` for the verbs that only work on a local store.
fn to_command(verb: Verb) -> Option<Command> {
    Some(match verb {
        Verb::Init | Verb::ChangePassphrase { .. } => return None,
        Verb::List {
            subjects,
            purpose,
            after,
            limit,
        } => Command::List {
            subjects,
            purpose,
            after,
            limit,
        },
        Verb::Show { name } => Command::Show { name },
        Verb::Create {
            name,
            purpose,
            rotate_every,
            max_age,
        } => Command::Create {
            name,
            purpose,
            rotate_every,
            max_age,
        },
        Verb::Rotate { name } => Command::Rotate { name },
        Verb::Due => Command::Due,
        Verb::Revoke {
            name,
            version,
            reason,
            occurred_at,
        } => Command::Revoke {
            name,
            version,
            reason,
            occurred_at,
        },
        Verb::ScheduleDestroy {
            name,
            version,
            window,
            force,
        } => Command::ScheduleDestroy {
            name,
            version,
            window,
            force,
        },
        Verb::CancelDestroy { name, version } => Command::CancelDestroy { name, version },
        Verb::Destroy { name, version } => Command::Destroy { name, version },
        Verb::Shred { subject } => Command::Shred { subject },
        Verb::Affected {
            name,
            version,
            after,
            limit,
        } => Command::Affected {
            name,
            version,
            after,
            limit,
        },
        Verb::Audit { after, limit, .. } => Command::Audit { after, limit },
        Verb::RevokePeer { identity, reason } => Command::RevokePeer { identity, reason },
        Verb::RevokedPeers => Command::RevokedPeers,
    })
}

pub(crate) fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            render::failure(json, f.step, &f.error);
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    let fail = |step| move |error| Failure { step, error };
    if let (Some(url), Some(cert), Some(key), Some(cacert)) =
        (&cli.gateway, &cli.cert, &cli.key, &cli.cacert)
    {
        if let Verb::Audit {
            ledger: true,
            limit,
            start,
            by,
            kind,
            since,
            until,
            ..
        } = &cli.verb
        {
            let query = ledger_query(*start, *limit, by, kind, since, until);
            let backend = remote::Remote::new(url, cert, key, cacert).map_err(fail("connect"))?;
            let page = backend.ledger_audit(&query).map_err(fail("audit"))?;
            render::ledger_audit(cli.json, &page);
            return Ok(());
        }
        let command = match to_command(cli.verb) {
            Some(c) => c,
            None => {
                let e = Error::InvalidArgument(
                    "init and change-passphrase work on a local store only (the node stopped)"
                        .into(),
                );
                return Err(Failure {
                    step: "connect",
                    error: e,
                });
            }
        };
        let step = render::step(&command);
        let mut backend = remote::Remote::new(url, cert, key, cacert).map_err(fail("connect"))?;
        let outcome = backend.execute(command, "").map_err(fail(step))?;
        render::outcome(cli.json, &outcome);
        return Ok(());
    }
    let store = cli
        .store
        .or_else(|| std::env::var_os("LEDGERGATE_KEY_STORE").map(PathBuf::from))
        .ok_or_else(|| Failure {
            step: "open store",
            error: Error::InvalidArgument("no key store: pass --store DIR".into()),
        })?;
    let actor = cli
        .actor
        .or_else(|| std::env::var("LEDGERGATE_ACTOR").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "officer".to_owned());
    let command = match cli.verb {
        Verb::Audit { ledger: true, .. } => {
            return Err(Failure {
                step: "audit",
                error: Error::InvalidArgument(
                    "--ledger reads a running node's ledger: pass --gateway (while the node is \
                     stopped: gateway ledger audit --data DIR)"
                        .into(),
                ),
            });
        }
        Verb::Init => {
            let source = match cli.pkcs11.config() {
                Some(token) => token,
                None => kek::for_init(cli.kek_file.as_deref())
                    .map_err(fail("read key-encryption key"))?,
            };
            let m = keymgr::KeyManager::init(&store, &source, local::now(), &actor)
                .map_err(fail("init"))?;
            render::initialised(cli.json, &store, &m);
            return Ok(());
        }
        Verb::ChangePassphrase {
            new_kek_file,
            to_pkcs11,
            to_pkcs11_key,
        } => {
            let token = cli.pkcs11.config();
            let (source, new) = match (token, to_pkcs11_key) {
                (Some(KekSource::Pkcs11(current)), Some(label)) => {
                    if label == current.key_label {
                        return Err(fail("change-passphrase")(Error::InvalidArgument(format!(
                            "`{label}` is the current KEK: name another key of the token"
                        ))));
                    }
                    let next = keymgr::Pkcs11Config {
                        key_label: label,
                        ..current.clone()
                    };
                    (KekSource::Pkcs11(current), KekSource::Pkcs11(next))
                }
                (Some(_), Some(_)) => {
                    return Err(fail("read key-encryption key")(Error::InvalidArgument(
                        "--to-pkcs11-key needs the store's KEK in a token".into(),
                    )));
                }
                // (The options are global, so clap's `requires` would not see them when they
                // come before the verb: checked here.)
                (None, label) if to_pkcs11 || label.is_some() => {
                    return Err(fail("read new key-encryption key")(Error::InvalidArgument(
                        "--to-pkcs11 and --to-pkcs11-key need --pkcs11-module and --pkcs11-token"
                            .into(),
                    )));
                }
                (Some(token), _) if to_pkcs11 => (
                    kek::existing(cli.kek_file.as_deref(), None)
                        .map_err(fail("read key-encryption key"))?,
                    token,
                ),
                (token, _) => (
                    kek::existing(cli.kek_file.as_deref(), token)
                        .map_err(fail("read key-encryption key"))?,
                    kek::for_change(new_kek_file.as_deref())
                        .map_err(fail("read new key-encryption key"))?,
                ),
            };
            let mut m = keymgr::KeyManager::open(&store, &source).map_err(fail("open store"))?;
            m.change_kek(&new, local::now(), &actor)
                .map_err(fail("change-passphrase"))?;
            render::changed(cli.json);
            return Ok(());
        }
        other => match to_command(other) {
            Some(c) => c,
            None => return Ok(()), // handled above
        },
    };
    let step = render::step(&command);
    let source = kek::existing(cli.kek_file.as_deref(), cli.pkcs11.config())
        .map_err(fail("read key-encryption key"))?;
    let mut backend = local::Local::open(&store, &source).map_err(fail("open store"))?;
    let outcome = backend.execute(command, &actor).map_err(fail(step))?;
    render::outcome(cli.json, &outcome);
    Ok(())
}

/// The query of `GET /admin/v1/audit`, each value percent-encoded.
fn ledger_query(
    start: Option<u64>,
    limit: Option<usize>,
    by: &Option<String>,
    kind: &Option<String>,
    since: &Option<String>,
    until: &Option<String>,
) -> String {
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                    char::from(b).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    let mut pairs = Vec::new();
    if let Some(s) = start {
        pairs.push(format!("start={s}"));
    }
    if let Some(l) = limit {
        pairs.push(format!("limit={l}"));
    }
    for (name, value) in [
        ("actor", by),
        ("kind", kind),
        ("since", since),
        ("until", until),
    ] {
        if let Some(v) = value {
            pairs.push(format!("{name}={}", encode(v)));
        }
    }
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ledger_query_is_encoded() {
        assert_eq!(
            super::ledger_query(
                Some(3),
                None,
                &Some("a b".into()),
                &None,
                &Some("2026-12-01T00:00:00+01:00".into()),
                &None
            ),
            "start=3&actor=a%20b&since=2026-12-01T00:00:00%2B01:00"
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        // clap checks conflicting names (such as a `--version` argument against the version flag) only
        // when a command is built: do it here, not in an officer's hands.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}

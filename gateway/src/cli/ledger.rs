//! `gateway ledger …`: create, inspect and verify a node's chain store while the node is stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use gateway::ledger::{
    self, Ledger, LedgerConfig, LedgerReader, NoteSigner as _, NoteVerifier, VerifyFailure,
    VerifyOptions, load_or_create_signing_key, verify_store,
};
use serde_json::json;

use super::CliError;

/// The log name a new node uses unless told otherwise.
const DEFAULT_ORIGIN: &str = "ledgergate.local/log";

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Create an empty ledger and its checkpoint signing key (does nothing to an existing one).
    Init {
        #[command(flatten)]
        data: DataArgs,
        /// The log's name in its checkpoints; fixed for the life of the log.
        #[arg(long, default_value = DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Recompute the whole tree from the stored entries and check every checkpoint; exit 0 only if all holds.
    Verify {
        #[command(flatten)]
        data: DataArgs,
        /// Trust only these checkpoint keys (C2SP vkey `name+id+key`), obtained out of band. Without it
        /// the keys recorded in the store are trusted, which does not defend against someone who can
        /// rewrite the store itself.
        #[arg(long = "vkey", value_name = "VKEY")]
        vkeys: Vec<String>,
        /// Take the checkpoint keys and their compromise times from this file (the JSON of
        /// `GET /v1/checkpoint/keys`, fetched out of band) instead of from the store.
        #[arg(long, value_name = "FILE", conflicts_with = "vkeys")]
        checkpoint_keys: Option<PathBuf>,
        /// Check every checkpoint's signature, not only the newest of each key (slower: about 40 us
        /// per checkpoint).
        #[arg(long)]
        all_signatures: bool,
        /// A checkpoint saved earlier (a note, e.g. from `GET /v1/checkpoint`): the store must still
        /// hold its tree, proved by a consistency proof. Catches entries removed from the end and a
        /// store rolled back to an older copy, which verify on their own as a shorter log.
        #[arg(long = "checkpoint", value_name = "FILE")]
        saved: Vec<PathBuf>,
    },
    /// Print the latest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        data: DataArgs,
    },
    /// List the audit entries (type `audit.*`), each with its index and its inclusion proof against
    /// the latest checkpoint.
    Audit {
        #[command(flatten)]
        data: DataArgs,
        /// Only entries by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only entries of this kind or below it (`key` keeps `key.rotate`).
        #[arg(long)]
        kind: Option<String>,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
    },
    /// Print the inclusion proof of an entry.
    Proof {
        #[command(flatten)]
        data: DataArgs,
        /// The entry's index.
        #[arg(long)]
        index: u64,
        /// The tree size to prove against (default: the latest checkpoint's).
        #[arg(long)]
        size: Option<u64>,
    },
}

/// Where the data is and how to print.
#[derive(Debug, Args)]
pub(crate) struct DataArgs {
    /// The node's data directory (holding `ledger/`); a directory made by `gateway init` works too.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl DataArgs {
    /// The ledger directory: `DIR/ledger`, or `DIR/data/ledger` when DIR is a node's top directory.
    fn store(&self) -> PathBuf {
        let direct = ledger::store_dir(&self.data);
        let nested = ledger::store_dir(&self.data.join("data"));
        if !direct.exists() && nested.exists() {
            nested
        } else {
            direct
        }
    }

    fn data_dir(&self) -> &Path {
        &self.data
    }
}

pub(crate) fn run(cmd: LedgerCommand) -> Result<ExitCode, CliError> {
    match cmd {
        LedgerCommand::Init { data, origin } => init(&data, &origin),
        LedgerCommand::Verify {
            data,
            vkeys,
            checkpoint_keys,
            all_signatures,
            saved,
        } => verify(
            &data,
            &vkeys,
            checkpoint_keys.as_deref(),
            all_signatures,
            &saved,
        ),
        LedgerCommand::Checkpoint { data } => checkpoint(&data),
        LedgerCommand::Proof { data, index, size } => proof(&data, index, size),
        LedgerCommand::Audit {
            data,
            actor,
            kind,
            since,
            until,
        } => audit(
            &data,
            gateway::audit::listing::Filter {
                actor,
                kind,
                since,
                until,
            },
        ),
    }
}

#[allow(clippy::print_stdout)]
fn emit(json_mode: bool, value: serde_json::Value, text: impl FnOnce() -> String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

fn init(data: &DataArgs, origin: &str) -> Result<ExitCode, CliError> {
    let key_path = ledger::signing_key_path(data.data_dir());
    let signer = load_or_create_signing_key(&key_path, origin)
        .map_err(|e| CliError::new("signing key", e))?;
    let vkey = signer.verifier().to_vkey();
    let ledger = Ledger::open(
        LedgerConfig::new(ledger::store_dir(data.data_dir()), origin),
        Arc::new(signer),
    )
    .map_err(|e| CliError::new("open ledger", e))?;
    let cp = ledger.checkpoint();
    ledger.close();
    emit(
        data.json,
        json!({ "origin": cp.checkpoint.origin, "size": cp.checkpoint.size, "vkey": vkey, "checkpoint": cp.note }),
        || {
            format!(
                "ledger ready: {} entries\nverifier key: {vkey}\n\n{}",
                cp.checkpoint.size,
                cp.note.trim_end()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// The checkpoint key history in the JSON of `GET /v1/checkpoint/keys`.
fn read_history(path: &Path) -> Result<Vec<ledger::CheckpointKey>, CliError> {
    #[derive(serde::Deserialize)]
    struct Answer {
        keys: Vec<ledger::CheckpointKey>,
    }
    let text = std::fs::read(path)
        .map_err(|e| CliError::new("read --checkpoint-keys", format!("{}: {e}", path.display())))?;
    serde_json::from_slice::<Answer>(&text)
        .map(|a| a.keys)
        .map_err(|e| CliError::new("read --checkpoint-keys", format!("{}: {e}", path.display())))
}

fn verify(
    data: &DataArgs,
    vkeys: &[String],
    history: Option<&Path>,
    all_signatures: bool,
    saved: &[PathBuf],
) -> Result<ExitCode, CliError> {
    let pinned = vkeys
        .iter()
        .map(|v| NoteVerifier::from_vkey(v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::new("read --vkey", e))?;
    let options = VerifyOptions {
        pinned,
        history: history.map(read_history).transpose()?,
        all_signatures,
    };
    let report = verify_store(&data.store(), &options).and_then(|r| {
        for path in saved {
            still_holds(&data.store(), &options.pinned, path, r.size, &r.root)?;
        }
        Ok(r)
    });
    match report {
        Ok(r) => {
            let secs = r.elapsed.as_secs_f64();
            // Integer MB/s keeps the text stable; bytes and seconds are in the JSON for precise use.
            #[allow(clippy::cast_precision_loss)]
            let mbps = r.entry_bytes as f64 / 1e6 / secs.max(1e-9);
            let superseded: Vec<_> = r
                .after_compromise
                .iter()
                .map(|f| json!({ "size": f.size, "vkey": f.vkey, "signed_at": f.signed_at.map(keymgr::rfc3339), "compromised_at": keymgr::rfc3339(f.compromised_at) }))
                .collect();
            emit(
                data.json,
                json!({
                    "ok": true, "origin": r.origin, "size": r.size, "root": r.root.to_base64(),
                    "checkpoints": r.checkpoints, "signatures_checked": r.signatures_checked,
                    "entry_bytes": r.entry_bytes, "seconds": secs,
                    "signed_after_compromise": superseded,
                }),
                || {
                    let mut text = format!(
                        "ok: {} entries and {} checkpoints of {} verified; root {} ({:.0} MB/s)",
                        r.size,
                        r.checkpoints,
                        r.origin,
                        r.root.to_base64(),
                        mbps
                    );
                    if !r.after_compromise.is_empty() {
                        text.push_str(&format!(
                            "\nwarning: {} checkpoint(s) were signed by a compromised key after its \
                             compromise; the head, signed by a sound key, vouches for their entries, \
                             but clients must not trust those notes: {}",
                            r.after_compromise.len(),
                            r.after_compromise
                                .iter()
                                .map(|f| f.size.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    text
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyFailure::Store(e)) => Err(CliError::new("ledger verify", e)),
        Err(failure) => {
            if data.json {
                emit(
                    true,
                    json!({ "ok": false, "error": failure.to_string() }),
                    String::new,
                );
            }
            super::report(&CliError::new("ledger verify", failure));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn checkpoint(data: &DataArgs) -> Result<ExitCode, CliError> {
    let reader = LedgerReader::open(&data.store()).map_err(|e| CliError::new("open ledger", e))?;
    let cp = reader
        .checkpoint()
        .map_err(|e| CliError::new("read checkpoint", e))?;
    emit(
        data.json,
        json!({
            "origin": cp.checkpoint.origin, "size": cp.checkpoint.size,
            "root": cp.checkpoint.root.to_base64(), "note": cp.note,
        }),
        || cp.note.trim_end().to_owned(),
    );
    Ok(ExitCode::SUCCESS)
}

fn proof(data: &DataArgs, index: u64, size: Option<u64>) -> Result<ExitCode, CliError> {
    let reader = LedgerReader::open(&data.store()).map_err(|e| CliError::new("open ledger", e))?;
    let cp = reader
        .checkpoint()
        .map_err(|e| CliError::new("read checkpoint", e))?;
    let size = size.unwrap_or(cp.checkpoint.size);
    let leaf = reader
        .leaf_hash(index)
        .map_err(|e| CliError::new("ledger proof", e))?;
    let hashes = reader
        .inclusion_proof(index, size)
        .map_err(|e| CliError::new("ledger proof", e))?;
    let b64: Vec<String> = hashes.iter().map(|h| h.to_base64()).collect();
    emit(
        data.json,
        json!({ "leaf_index": index, "tree_size": size, "leaf_hash": leaf.to_base64(), "hashes": b64 }),
        || {
            let mut out = format!(
                "leaf_index {index}\ntree_size {size}\nleaf_hash {}",
                leaf.to_base64()
            );
            for h in &b64 {
                out.push_str("\nhash ");
                out.push_str(h);
            }
            out
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Every audit entry the filter keeps, in ledger order: JSON, one line each (`{index, entry, proof}`),
/// after a line with the checkpoint the proofs are against; or a table.
#[allow(clippy::print_stdout)]
fn audit(data: &DataArgs, filter: gateway::audit::listing::Filter) -> Result<ExitCode, CliError> {
    let filter = filter
        .parse()
        .map_err(|e| CliError::new("read the filter", e))?;
    let reader = LedgerReader::open(&data.store()).map_err(|e| CliError::new("open ledger", e))?;
    let cp = reader
        .checkpoint()
        .map_err(|e| CliError::new("read checkpoint", e))?;
    let size = cp.checkpoint.size;
    if data.json {
        println!(
            "{}",
            json!({ "tree_size": size, "checkpoint": cp.note, "root": cp.checkpoint.root.to_base64() })
        );
    } else {
        println!(
            "{:>8}  {:<20}  {:<26}  {:<14}  {:<10}  target",
            "index", "time", "type", "actor", "outcome"
        );
    }
    reader
        .for_each_entry(0, |index, bytes| {
            if index >= size {
                return Ok(false);
            }
            let Some(entry) = filter.keeps(bytes) else {
                return Ok(true);
            };
            if data.json {
                let hashes: Vec<String> = reader
                    .inclusion_proof(index, size)?
                    .iter()
                    .map(|h| h.to_base64())
                    .collect();
                println!(
                    "{}",
                    json!({
                        "index": index, "entry": entry,
                        "proof": { "leaf_index": index, "tree_size": size, "hashes": hashes },
                    })
                );
            } else {
                let field = |k: &str| {
                    entry
                        .get(k)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("-")
                        .to_owned()
                };
                println!(
                    "{index:>8}  {:<20}  {:<26}  {:<14}  {:<10}  {}",
                    field("time"),
                    field("type"),
                    field("actor"),
                    field("outcome"),
                    field("target")
                );
            }
            Ok(true)
        })
        .map_err(|e| CliError::new("ledger audit", e))?;
    Ok(ExitCode::SUCCESS)
}

/// Whether the store (verified: `size` entries with root `root`) still holds the tree of the
/// checkpoint saved in `path`: its signature checks out (against `pinned`, or the keys recorded in
/// the store) and a consistency proof from its size to the store's holds.
fn still_holds(
    store: &Path,
    pinned: &[NoteVerifier],
    path: &Path,
    size: u64,
    root: &ledger::Hash,
) -> Result<(), VerifyFailure> {
    let fail = |why: String| VerifyFailure::Saved(format!("{}: {why}", path.display()));
    let note = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let reader = LedgerReader::open(store).map_err(VerifyFailure::Store)?;
    let trusted = if pinned.is_empty() {
        reader.verifiers().map_err(VerifyFailure::Store)?
    } else {
        pinned.to_vec()
    };
    let saved = ledger::SignedCheckpoint::open(&note, &trusted)
        .map_err(|e| {
            fail(format!(
                "not a checkpoint of this log signed by a trusted key: {e}"
            ))
        })?
        .checkpoint;
    if saved.size > size {
        return Err(fail(format!(
            "the saved checkpoint covers {} entries, the store holds {size}: entries were removed \
             from the end (or the store was rolled back)",
            saved.size
        )));
    }
    let proof = reader
        .consistency_proof(saved.size, size)
        .map_err(VerifyFailure::Store)?;
    ledger::verify_consistency(saved.size, size, &proof, &saved.root, root).map_err(|e| {
        fail(format!(
            "the store is not an extension of the saved checkpoint (size {}): {e}",
            saved.size
        ))
    })
}

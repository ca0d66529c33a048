//! `gateway policy …`: check policy files before they are deployed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use policies::PolicySet;
use serde_json::json;

use super::CliError;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file or a directory of *.yaml files: print every error as
    /// `file:line:col: code: path: message` and exit non-zero, or a one-line summary and exit 0.
    Check {
        /// A policy file, or a directory of them.
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(cmd: PolicyCommand) -> Result<ExitCode, CliError> {
    match cmd {
        PolicyCommand::Check { path, json } => Ok(check(&path, json)),
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)] // the command's output is its job
fn check(path: &std::path::Path, json_mode: bool) -> ExitCode {
    match PolicySet::load(path) {
        Ok(p) => {
            let types: Vec<&String> = p.record_types().keys().collect();
            if json_mode {
                let v = json!({
                    "ok": true, "record_types": types, "subjects": p.subjects().len(),
                    "digest": p.digest_hex(), "files": p.sources(),
                });
                println!("{v}");
            } else {
                let names = types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "ok: {} record types ({names}), {} subjects, {} files, digest {}",
                    types.len(),
                    p.subjects().len(),
                    p.sources().len(),
                    p.digest_hex()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            if json_mode {
                let list: Vec<_> = errors
                    .0
                    .iter()
                    .map(|e| {
                        json!({
                            "file": e.file, "line": e.position.map(|p| p.0), "column": e.position.map(|p| p.1),
                            "path": e.path, "code": e.code, "message": e.message,
                        })
                    })
                    .collect();
                println!("{}", json!({ "ok": false, "errors": list }));
            }
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

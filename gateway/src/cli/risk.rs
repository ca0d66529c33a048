//! `gateway risk …`: officers list alarms and quarantine or release subjects through a running
//! node's admin API (docs/risk.md).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct RiskArgs {
    /// A running node's admin API and the officer's credentials.
    #[command(flatten)]
    officer: super::officer::OfficerArgs,
    #[command(subcommand)]
    command: RiskCommand,
}

#[derive(Debug, Subcommand)]
enum RiskCommand {
    /// The most recent alarms, newest first, as JSON.
    Alarms {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The quarantined subjects, as JSON.
    Quarantined,
    /// Quarantine a subject: every request of it is refused (403 quarantined) until released.
    Quarantine {
        /// The policy subject.
        subject: String,
        /// Why (in the audit trail).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Release a quarantined subject.
    Release {
        /// The policy subject.
        subject: String,
    },
}

#[allow(clippy::print_stdout)] // the command's output is its job
pub(crate) fn run(args: RiskArgs) -> Result<ExitCode, CliError> {
    let (client, rt) = args.officer.connect("risk")?;
    let answer: serde_json::Value = rt.block_on(async {
        match args.command {
            RiskCommand::Alarms { limit } => client
                .json("GET", &format!("/admin/v1/alarms?limit={limit}"), None)
                .await
                .map_err(|e| CliError::new("risk alarms", e)),
            RiskCommand::Quarantined => client
                .json("GET", "/admin/v1/quarantine", None)
                .await
                .map_err(|e| CliError::new("risk quarantined", e)),
            RiskCommand::Quarantine { subject, reason } => {
                let body = serde_json::json!({ "subject": subject, "reason": reason });
                let body =
                    serde_json::to_vec(&body).map_err(|e| CliError::new("risk quarantine", e))?;
                client
                    .json("POST", "/admin/v1/quarantine", Some(body))
                    .await
                    .map_err(|e| CliError::new("risk quarantine", e))
            }
            RiskCommand::Release { subject } => {
                // The subject is a policy name; a path segment cannot carry a '/' anyway.
                let path: String = subject
                    .bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            char::from(b).to_string()
                        }
                        other => format!("%{other:02X}"),
                    })
                    .collect();
                client
                    .json("DELETE", &format!("/admin/v1/quarantine/{path}"), None)
                    .await
                    .map_err(|e| CliError::new("risk release", e))
            }
        }
    })?;
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

//! `gateway consortium …`: officers list, add and remove a running consortium's members through a
//! member's admin API (docs/consortium.md, Membership).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct ConsortiumArgs {
    /// A running member's admin API and the officer's credentials.
    #[command(flatten)]
    officer: super::officer::OfficerArgs,
    #[command(subcommand)]
    command: ConsortiumCommand,
}

#[derive(Debug, Subcommand)]
enum ConsortiumCommand {
    /// The members (voters and learners) and the leader, as JSON.
    List,
    /// Add a member: it catches up as a learner, proves its copy by cosigning the leader's
    /// checkpoint, then votes. Asks again while it catches up, up to `--wait`.
    Add {
        /// Its Raft node id: positive, never used before in this consortium.
        #[arg(long)]
        id: u64,
        /// Its name (its cosignatures' key name).
        #[arg(long)]
        name: String,
        /// Its node identity (64 hex digits).
        #[arg(long)]
        identity: String,
        /// Its ledger node's channel listener (host:port).
        #[arg(long)]
        address: SocketAddr,
        /// Seconds to keep asking while it catches up.
        #[arg(long, default_value_t = 600)]
        wait: u64,
    },
    /// Remove a member (voter or learner).
    Remove {
        /// Its Raft node id.
        #[arg(long)]
        id: u64,
    },
}

#[allow(clippy::print_stdout)] // the command's output is its job
pub(crate) fn run(args: ConsortiumArgs) -> Result<ExitCode, CliError> {
    let (client, rt) = args.officer.connect("consortium")?;
    let answer: serde_json::Value = rt.block_on(async {
        match args.command {
            ConsortiumCommand::List => client
                .json("GET", "/admin/v1/consortium", None)
                .await
                .map_err(|e| CliError::new("consortium list", e)),
            ConsortiumCommand::Add {
                id,
                name,
                identity,
                address,
                wait,
            } => {
                let body = serde_json::json!({ "id": id, "name": name, "identity": identity, "address": address });
                let body = serde_json::to_vec(&body).map_err(|e| CliError::new("consortium add", e))?;
                let deadline = Instant::now() + Duration::from_secs(wait);
                loop {
                    match client
                        .json("POST", "/admin/v1/consortium/members", Some(body.clone()))
                        .await
                    {
                        // Still a learner, or a leader being elected: the add is repeatable.
                        Err(keymgr::Error::Remote { code, detail })
                            if matches!(code.as_str(), "catching_up" | "unavailable")
                                && Instant::now() < deadline =>
                        {
                            tracing::info!(%code, %detail, "asking again");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        other => break other.map_err(|e| CliError::new("consortium add", e)),
                    }
                }
            }
            ConsortiumCommand::Remove { id } => client
                .json("DELETE", &format!("/admin/v1/consortium/members/{id}"), None)
                .await
                .map_err(|e| CliError::new("consortium remove", e)),
        }
    })?;
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

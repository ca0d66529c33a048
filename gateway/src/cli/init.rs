//! `gateway init --dir DIR`: make a node directory (or find the complete one already there).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The node directory to make.
    #[arg(long, default_value = "ledgergate-data")]
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[allow(clippy::print_stdout)] // the command's output is its job
pub(crate) fn run(args: &InitArgs) -> Result<ExitCode, CliError> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "gateway-init".to_owned());
    let node = gateway::init::init(&args.dir, time::OffsetDateTime::now_utc(), &actor)
        .map_err(|e| CliError::new("init", e))?;
    if args.json {
        println!(
            "{}",
            json!({ "dir": node.dir, "created": node.created, "vkey": node.vkey })
        );
    } else {
        let d = node.dir.display();
        println!(
            "{} node directory {d}",
            if node.created {
                "created"
            } else {
                "found the existing"
            }
        );
        println!("  config          {d}/gateway.yaml");
        println!(
            "  development PKI {d}/pki/ (CA, server, provider-a, provider-b, officer, revoked + CRL)"
        );
        println!("  policies        {d}/policies/");
        println!("  keys and ledger {d}/data/ (KEK passphrase in {d}/kek.pass: development only)");
        println!("  checkpoint key  {}", node.vkey);
    }
    Ok(ExitCode::SUCCESS)
}

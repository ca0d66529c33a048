//! `gateway serve` and `gateway quickstart`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use gateway::config::Config;

use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The node's configuration file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Listen here instead of the configured address.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve /metrics, /healthz and /readyz (plain HTTP) here instead of the configured address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct QuickstartArgs {
    /// The node directory: made on the first run, reused after.
    #[arg(long, default_value = "ledgergate-data")]
    dir: PathBuf,
    /// Listen here instead of the configured address.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve /metrics, /healthz and /readyz (plain HTTP) here instead of the configured address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("start runtime", e))
}

fn run_node(config: Config) -> Result<ExitCode, CliError> {
    runtime()?
        .block_on(gateway::serve::serve(config, gateway::serve::signal()))
        .map_err(|e| CliError::new("serve", e))?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn serve(args: &ServeArgs) -> Result<ExitCode, CliError> {
    let mut config = Config::load(&args.config).map_err(|e| CliError::new("read config", e))?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = m;
    }
    run_node(config)
}

/// The commands a person can paste to try the node.
fn curl_commands(dir: &Path, listen: SocketAddr) -> String {
    let pki = dir.join("pki");
    let tls = |who: &str| {
        format!(
            "--cacert {ca} --cert {p}/{who}.pem --key {p}/{who}.key",
            ca = pki.join("ca.pem").display(),
            p = pki.display()
        )
    };
    let url = format!("https://localhost:{}", listen.port());
    // The record id is the provider's own reference (kept off the shared ledger as a keyed reference),
    // never a person's id (the applicant's is hashed by the policy).
    let record = r#"{"type":"loan_application","id":"LOAN-2026-0001","fields":{"applicant_id":"A-1001","name":"Erika Mustermann","phone":"+49 170 1234567","age":37,"birth_date":"1987-06-15","salary":52000.5,"amount":250000,"currency":"EUR"}}"#;
    format!(
        "Submit a record as provider-a:\n  curl {a} -H 'content-type: application/json' -d '{record}' {url}/v1/records\n\
         Read it back (desensitized, with its inclusion proof):\n  curl {a} {url}/v1/records/LOAN-2026-0001\n\
         The signed checkpoint:\n  curl {a} {url}/v1/checkpoint\n",
        a = tls("provider-a"),
    )
}

#[allow(clippy::print_stdout)] // the quickstart's instructions are its output
pub(crate) fn quickstart(args: &QuickstartArgs) -> Result<ExitCode, CliError> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "quickstart".to_owned());
    let node = gateway::init::init(&args.dir, time::OffsetDateTime::now_utc(), &actor)
        .map_err(|e| CliError::new("init", e))?;
    let mut config = Config::load(&args.dir.join("gateway.yaml"))
        .map_err(|e| CliError::new("read config", e))?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = m;
    }
    let dir = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone());
    println!(
        "Ledgergate quickstart: {} node directory {}\n(the KEK passphrase in kek.pass is for development only)\n",
        if node.created { "created" } else { "reusing" },
        dir.display()
    );
    println!("{}", curl_commands(&dir, config.listen));
    println!(
        "Metrics (Prometheus, plain HTTP) and readiness:\n  curl http://{m}/metrics\n  curl http://{m}/readyz\n",
        m = config.metrics_listen
    );
    println!("Stop with Ctrl-C.");
    run_node(config)
}

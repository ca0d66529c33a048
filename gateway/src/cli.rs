//! Command-line interface: argument definitions and the dispatch to each subcommand's module.

mod consortium;
mod init;
mod ledger;
mod officer;
mod policy;
mod risk;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Ledgergate gateway node.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// First run: make a node directory with a development PKI (or reuse it), print curl commands, serve.
    Quickstart(serve::QuickstartArgs),
    /// Run a node from its configuration file.
    Serve(serve::ServeArgs),
    /// Make a node directory: development PKI, keys, policies, an empty ledger and gateway.yaml.
    Init(init::InitArgs),
    /// Inspect and verify the chain store (ledger) of a stopped node.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Check access policy files.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// List, add and remove a running consortium's members (as an officer, through a member).
    Consortium(consortium::ConsortiumArgs),
    /// List alarms, quarantine and release subjects of a running node (as an officer).
    Risk(risk::RiskArgs),
}

pub(crate) fn init_logging(format: LogFormat) {
    let mut text = std::env::var("LEDGERGATE_LOG").unwrap_or_else(|_| "info".to_owned());
    // openraft logs every failed RPC to an unreachable member as an error, twice a second per
    // member: its log is off unless asked for by name. A consortium member's state is in its
    // metrics and in our own events (docs/consortium.md).
    if !text.contains("openraft") {
        text.push_str(",openraft=off");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&text)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) fn run(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Init(args) => init::run(&args),
        Command::Quickstart(args) => serve::quickstart(&args),
        Command::Serve(args) => serve::serve(&args),
        Command::Ledger(cmd) => ledger::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Consortium(args) => consortium::run(args),
        Command::Risk(args) => risk::run(args),
    }
}

/// A failed command: which step failed, and why (with the cause chain).
#[derive(Debug)]
pub(crate) struct CliError {
    step: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl CliError {
    pub(crate) fn new(
        step: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        CliError {
            step,
            source: source.into(),
        }
    }
}

/// The exit status of a node whose KEK cannot be used as configured (sysexits' `EX_CONFIG`): a
/// service manager must not restart it (deploy/systemd: `RestartPreventExitStatus=78`), since every
/// retry of a wrong PIN counts towards locking the token.
pub(crate) const EXIT_KEK_REFUSED: u8 = 78;

impl CliError {
    /// 78 when the KEK was refused (wrong passphrase or PIN, PIN locked, token key missing), else 1.
    pub(crate) fn exit_code(&self) -> ExitCode {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self.source.as_ref());
        while let Some(c) = cause {
            if let Some(k) = c.downcast_ref::<keymgr::Error>()
                && matches!(k, keymgr::Error::WrongKek | keymgr::Error::Token(_))
            {
                return ExitCode::from(EXIT_KEK_REFUSED);
            }
            cause = c.source();
        }
        ExitCode::FAILURE
    }
}

/// Prints one line: `gateway: <step>: <error>: <cause>: …`.
pub(crate) fn report(e: &CliError) {
    let mut line = format!("gateway: {}: {}", e.step, e.source);
    let mut cause = e.source.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    #[allow(clippy::print_stderr)] // the one place the CLI talks to the operator about failure
    {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}

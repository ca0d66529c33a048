//! The `gateway` binary: parse the command line, set up logging, run one subcommand.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    match cli::run(args.command) {
        Ok(code) => code,
        Err(e) => {
            cli::report(&e);
            ExitCode::FAILURE
        }
    }
}

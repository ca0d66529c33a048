//! The `gateway` binary: parse the command line, set up logging, run one subcommand.

#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc rather than glibc's malloc: on the ingest path glibc spent about a quarter of the time in
/// malloc/free and in zeroing fresh pages for request bodies above its mmap threshold.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    match cli::run(args.command) {
        Ok(code) => code,
        Err(e) => {
            cli::report(&e);
            e.exit_code()
        }
    }
}

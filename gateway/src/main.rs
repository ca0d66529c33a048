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
    // mimalloc asks for transparent huge pages on its arenas (MADV_HUGEPAGE) and gives idle pages
    // back to the kernel; each one it takes again then faults in as a fresh 2 MiB page that the
    // kernel zeroes whole. Under ingest that zeroing was 4–10 % of all CPU samples (perf, README
    // "Transparent huge pages"); without huge pages only the 4 KiB pages touched are zeroed. Where
    // the call is refused (a seccomp filter, another kernel), the node runs as before.
    let thp_off = nix::sys::prctl::set_thp_disable(true);
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    if let Err(e) = thp_off {
        tracing::debug!(error = %e, "transparent huge pages stay on");
    }
    match cli::run(args.command) {
        Ok(code) => code,
        Err(e) => {
            cli::report(&e);
            e.exit_code()
        }
    }
}

//! `runner`: parse, run, print the error chain once, exit non-zero.

use bracket_closer::{app, cli::Cli, exit_code};
use clap::Parser;

// burn-flex and the fused kernels allocate a tensor-sized buffer for nearly every operation;
// glibc serves buffers of this size with fresh mmap pages, and the page faults took ~15% of
// a training step. mimalloc keeps and reuses them (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Before anything computes: `runner eval` and `runner explain` score like training ran.
    bracket_closer::backend::flush_denormals();
    let cli = Cli::parse();
    bracket_closer::logging::init();
    bracket_closer::signals::install();
    if let Err(err) = app::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(exit_code(&err));
    }
}

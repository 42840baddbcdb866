//! `runner`: parse, run, print the error chain once, exit non-zero.

use bracket_closer::{app, cli::Cli, exit_code};
use clap::Parser;

fn main() {
    let cli = Cli::parse();
    bracket_closer::logging::init();
    bracket_closer::signals::install();
    if let Err(err) = app::run(cli) {
        eprintln!("error: {err:#}");
        std::process::exit(exit_code(&err));
    }
}

//! BracketCloser: train GRU, LSTM and Transformer models to close brackets, from specs.

pub mod app;
pub mod artifacts;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod compare;
pub mod data;
pub mod error;
pub mod eval;
pub mod explain;
pub use bracket_kernels as kernels;
pub mod limits;
pub mod logging;
pub mod merge;
pub mod model;
pub mod prune;
pub mod quantize;
pub mod run;
pub mod runs;
pub mod score;
pub mod serve;
pub mod signals;
pub mod spec;
pub mod sweep;
pub mod text;
pub mod train;

/// Exit code for an error: 130 when interrupted, 2 for bad user input ([`error::UserError`]),
/// 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|c| c.is::<signals::Interrupted>()) {
        signals::EXIT_INTERRUPTED
    } else if error::is_user_error(err) {
        2
    } else {
        1
    }
}

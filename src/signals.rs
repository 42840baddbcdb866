//! Ctrl-C and SIGTERM: the first asks the training loop to finish its step, save and stop;
//! the second exits at once. Every file is written by rename, so even then none is left
//! half-written.

use std::sync::atomic::{AtomicUsize, Ordering};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Exit code of an interrupted command (128 + SIGINT), as shells expect.
pub const EXIT_INTERRUPTED: i32 = 130;

/// Installs the handler (once per process; the library's tests never call it).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!("\nsecond interrupt: exiting now");
            std::process::exit(EXIT_INTERRUPTED);
        }
        eprintln!("\ninterrupt: finishing the current step and saving (again to exit at once)");
    });
}

pub fn stop_requested() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Returned by a command that stopped on a signal, so that `main` exits with 130.
#[derive(Debug, thiserror::Error)]
#[error("interrupted; {0}")]
pub struct Interrupted(pub String);

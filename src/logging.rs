//! Logs: tracing to stderr (kept clear of the progress bar) and, once a run directory
//! exists, to its `run.log` too.

use indicatif::ProgressBar;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

static LOG_FILE: Mutex<Option<File>> = Mutex::new(None);
static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
static TRAINING_BAR: AtomicBool = AtomicBool::new(true);

/// Whether training shows its own progress bar (a sweep shows one over trials instead).
pub fn set_training_bar(show: bool) {
    TRAINING_BAR.store(show, Ordering::Relaxed);
}

pub fn training_bar() -> bool {
    TRAINING_BAR.load(Ordering::Relaxed)
}

/// Installs the global subscriber. `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a terminal: a worker's log file or a redirected stderr stays text.
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(StderrBelowBar)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let file = tracing_subscriber::fmt::layer()
        .with_writer(RunLog)
        .with_ansi(false)
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
}

/// From now on, log lines also go to `path`.
pub fn log_to_file(path: &Path) -> std::io::Result<()> {
    let file = File::options().create(true).append(true).open(path)?;
    *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    Ok(())
}

/// Routes stderr log lines through this bar so they print above it.
pub fn attach_bar(bar: Option<ProgressBar>) {
    *BAR.get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = bar;
}

struct RunLog;

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(file) => file.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RunLog {
    type Writer = RunLog;
    fn make_writer(&'a self) -> Self::Writer {
        RunLog
    }
}

struct StderrBelowBar;

impl Write for StderrBelowBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR
            .get()
            .and_then(|m| m.lock().ok())
            .and_then(|b| b.clone());
        match bar {
            Some(bar) if !bar.is_hidden() => {
                bar.suspend(|| std::io::stderr().write_all(buf))?;
                Ok(buf.len())
            }
            _ => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for StderrBelowBar {
    type Writer = StderrBelowBar;
    fn make_writer(&'a self) -> Self::Writer {
        StderrBelowBar
    }
}

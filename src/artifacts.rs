//! The experiment directory: paths, run ids, atomic writes and the CSV files.
//!
//! Every file is written to a temporary file beside its destination and renamed into place,
//! so an interrupted run never leaves a half-written CSV, JSON or checkpoint.

use crate::error::UserError;
use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Temporary files start with this: what a killed process leaves is recognisable.
pub const TMP_PREFIX: &str = ".tmp-";

/// rw for everyone the umask allows, as `File::create` gives (tempfile's own default is
/// 0600, which kept colleagues from reading a run).
fn shared_permissions() -> std::fs::Permissions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o666)
    }
    #[cfg(not(unix))]
    {
        let file = tempfile::tempfile().expect("a temporary file for default permissions");
        file.metadata().expect("its metadata").permissions()
    }
}

/// Removes what interrupted atomic writes left below `dir` (`.tmp-*` files).
pub fn remove_stray_temporaries(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading '{}'", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            removed += remove_stray_temporaries(&path)?;
        } else if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing '{}'", path.display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating '{}'", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .permissions(shared_permissions())
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in '{}'", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("writing '{}'", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("renaming into '{}'", path.display()))?;
    Ok(())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Serialises rows with a header, in memory, then writes the file atomically.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    let bytes = writer.into_inner().context("finishing CSV")?;
    write_atomic(path, &bytes)
}

/// A new run directory `<out_dir>/<name>/<run-id>/`, with a time-sorted id that never reuses
/// an existing directory (a second run in the same second gets a `-2` suffix).
pub fn create_run_dir(out_dir: &Path, name: &str) -> Result<PathBuf> {
    let parent = out_dir.join(name);
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating experiment directory '{}'", parent.display()))?;
    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
    for attempt in 1.. {
        let id = if attempt == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{attempt}")
        };
        let dir = parent.join(id);
        // create_dir (not _all) fails if it exists, so two processes never share a directory.
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating run directory '{}'", dir.display()))
            }
        }
    }
    unreachable!("the loop returns or tries another suffix")
}

/// The checkpoints a run keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Slot {
    /// The best validation exact match so far (then the lowest validation loss).
    Best,
    /// The latest evaluation: where a resumed run continues.
    Last,
    /// `best` with its LoRA adapters folded into plain weights (`runner merge`).
    Merged,
    /// A checkpoint with its weight matrices quantised to 8 bits (`runner quantize`).
    Int8,
    /// A checkpoint with its weight matrices quantised to 4 bits (`runner quantize`).
    Int4,
}

impl Slot {
    /// Its directory name under `checkpoints/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Best => "best",
            Slot::Last => "last",
            Slot::Merged => "merged",
            Slot::Int8 => "int8",
            Slot::Int4 => "int4",
        }
    }
}

/// File names inside a run directory, in one place.
pub struct RunPaths {
    pub root: PathBuf,
}

impl RunPaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn resolved(&self) -> PathBuf {
        self.root.join("resolved.toml")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("run.log")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.csv")
    }
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    /// How the model started: weights taken from another run, reset, frozen, adapted.
    pub fn start_report(&self) -> PathBuf {
        self.root.join("start.json")
    }
    pub fn eval_csv(&self) -> PathBuf {
        self.root.join("eval.csv")
    }
    pub fn report(&self) -> PathBuf {
        self.root.join("report.txt")
    }
    pub fn dataset(&self) -> PathBuf {
        self.root.join("dataset")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn checkpoint(&self, slot: Slot) -> PathBuf {
        self.checkpoints().join(slot.as_str())
    }
    pub fn history_plot(&self) -> PathBuf {
        self.root.join("training_history.png")
    }
    pub fn eval_suite_csv(&self) -> PathBuf {
        self.root.join("eval_suite.csv")
    }
    pub fn eval_suite_md(&self) -> PathBuf {
        self.root.join("eval_suite.md")
    }
    pub fn fresh_examples(&self, n: usize) -> PathBuf {
        self.root.join(format!("fresh_{n}.jsonl"))
    }
    /// Held (OS lock) by the process training in the run: see [`RunLock`].
    pub fn lock(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Is this a run directory (one `runner run` or a sweep trial wrote)?
    pub fn is_run(&self) -> bool {
        self.resolved().is_file()
    }

    /// `self`, or a user error saying the directory is not a run.
    pub fn existing(root: &Path) -> Result<Self, UserError> {
        let run = Self::new(root);
        if !root.is_dir() {
            return Err(UserError::input(
                root.display().to_string(),
                "no such run directory",
            ));
        }
        if !run.is_run() {
            return Err(UserError::input(
                root.display().to_string(),
                "not a run directory (no resolved.toml); `runner ls` lists the runs",
            ));
        }
        Ok(run)
    }
}

/// An OS lock on a run directory, held while a process trains in it and released on any
/// exit (even `kill -9`), so that two processes never write one run.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    pub fn acquire(run: &RunPaths) -> Result<Self> {
        let path = run.lock();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening '{}'", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(UserError::input(
                    run.root.display().to_string(),
                    format!(
                        "another runner process (pid {}) is training in this run directory; \
                         wait for it to end or stop it first",
                        holder.trim()
                    ),
                )
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking '{}'", path.display()))
            }
        }
        // For the message another process prints; the lock itself is the OS's.
        file.set_len(0)
            .and_then(|_| file.write_all(std::process::id().to_string().as_bytes()))
            .with_context(|| format!("writing '{}'", path.display()))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_never_collide_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let a = create_run_dir(dir.path(), "x").unwrap();
        let b = create_run_dir(dir.path(), "x").unwrap();
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
    }

    #[test]
    fn a_run_directory_is_locked_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunPaths::new(dir.path());
        let held = RunLock::acquire(&run).unwrap();
        let err = RunLock::acquire(&run).err().expect("second lock refused");
        assert!(crate::error::is_user_error(&err), "{err:#}");
        assert!(
            format!("{err:#}").contains(&std::process::id().to_string()),
            "{err:#}"
        );
        drop(held);
        RunLock::acquire(&run).expect("free again");
    }

    #[cfg(unix)]
    #[test]
    fn atomic_writes_honour_the_umask_not_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // Whatever the umask, a file created by open(2) with 0666 is readable by its owner's
        // group unless the umask removes it; tempfile's default 0600 never is.
        let umask_allows_group_read = {
            let probe = dir.path().join("probe");
            std::fs::File::create(&probe).unwrap();
            std::fs::metadata(&probe).unwrap().permissions().mode() & 0o040 != 0
        };
        assert_eq!(mode & 0o040 != 0, umask_allows_group_read, "mode {mode:o}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

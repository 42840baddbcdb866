//! The experiment directory: paths, run ids, atomic writes and the CSV files.
//!
//! Every file is written to a temporary file beside its destination and renamed into place,
//! so an interrupted run never leaves a half-written CSV, JSON or checkpoint.

use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating '{}'", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
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
    pub fn checkpoint(&self, which: &str) -> PathBuf {
        self.checkpoints().join(which)
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
    fn atomic_write_replaces_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

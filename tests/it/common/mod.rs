//! Helpers: a temporary working directory with a spec in it, and the binary.

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A tiny, fast spec: a few hundred examples and a few dozen steps.
pub const TINY: &str = r#"
[data]
train_samples = 400
val_samples = 60
test_samples = 60
[model]
d_embed = 8
d_hidden = 16
[train]
max_steps = 12
eval_every = 4
batch_size = 16
budget = "2min"
"#;

pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).expect("write spec");
        path
    }

    /// `runner` with this directory as its working directory and no RUNNER_ variables.
    pub fn runner(&self) -> Command {
        Command::from_std(self.process())
    }

    /// [`Self::runner`] as a plain process, for a test that spawns and signals it.
    pub fn process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"));
        cmd.current_dir(self.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("RUNNER_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Every file below the workspace other than the given inputs.
    pub fn outputs(&self, inputs: &[&str]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    found.push(path.clone());
                    stack.push(path);
                } else if !inputs.contains(&name.as_str()) {
                    found.push(path);
                }
            }
        }
        found
    }

    /// Runs a spec to completion and returns its run directory.
    pub fn run_ok(&self, spec: &str, overrides: &[&str]) -> PathBuf {
        let out = self
            .runner()
            .arg("run")
            .arg(spec)
            .args(overrides)
            .output()
            .expect("runner runs");
        self.run_dir_of(&out)
    }

    /// The run directory a successful `runner run` printed.
    pub fn run_dir_of(&self, out: &std::process::Output) -> PathBuf {
        assert!(
            out.status.success(),
            "runner run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("run directory: "))
            .expect("run directory printed");
        self.path().join(line)
    }
}

/// The lines of a metrics.csv text without the elapsed_s column (the one that depends on
/// the machine's speed).
pub fn without_elapsed(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .map(|l| {
            let mut cols: Vec<&str> = l.split(',').collect();
            cols.remove(2);
            cols.join(",")
        })
        .collect()
}

/// burn's CPU device has one random generator per process: tests that initialise or train
/// models in this process take turns, so that each sees the generator its seed set.
pub fn burn_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

//! Finished and running runs on disk: `summary.json` and the `runner ls` listing.

use crate::artifacts::RunPaths;
use crate::train::MetricsRow;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `summary.json`: what a run did and scored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub name: String,
    pub run_id: String,
    pub arch: String,
    /// completed, budget_reached, target_reached, diverged or interrupted.
    pub status: crate::train::Status,
    pub stop_reason: crate::train::StopReason,
    pub best_val_exact: Option<f64>,
    pub best_step: Option<u64>,
    /// Lowest validation loss of any evaluation.
    pub best_val_loss: Option<f64>,
    /// Greedy exact match of the best checkpoint on the test split (none for a language
    /// model, `data.task = "lm"`).
    pub test_exact: Option<f64>,
    /// Teacher-forced loss of the best checkpoint on the test split, over the tokens the
    /// training loss scores.
    #[serde(default)]
    pub test_loss: Option<f64>,
    pub test_correct: Option<usize>,
    pub test_total: usize,
    pub steps: u64,
    pub epochs: u64,
    pub samples: u64,
    /// Whole run: data, training, final evaluation.
    pub wall_s: f64,
    pub train_s: f64,
    pub samples_per_s: f64,
    /// Text runs: tokens predicted per training second (windows x their length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    pub params: usize,
    /// Parameters the optimiser updated (fewer than `params` with `train.freeze` or LoRA);
    /// None in runs from before `start.json`.
    #[serde(default)]
    pub trained_params: Option<usize>,
    /// How the model started (`start.json`): weights from another run, reset, frozen, adapted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<crate::model::start::StartReport>,
    pub backend: String,
    pub threads: usize,
}

pub fn read_summary(run_dir: &Path) -> Result<Summary> {
    let path = RunPaths::new(run_dir).summary();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading '{}'", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("'{}' is not a valid summary", path.display()))
}

/// Reads metrics rows; on a bad line, the rows before it and a message naming path and line.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>, (Vec<MetricsRow>, String)> {
    let mut reader = match csv::Reader::from_path(path) {
        Ok(r) => r,
        Err(e) => return Err((Vec::new(), format!("{}: cannot read: {e}", path.display()))),
    };
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<MetricsRow>().enumerate() {
        match row {
            Ok(r) => rows.push(r),
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(i as u64 + 2);
                return Err((
                    rows,
                    format!("{}:{line}: malformed metrics row: {e}", path.display()),
                ));
            }
        }
    }
    Ok(rows)
}

/// The lowest finite validation loss of any evaluation.
pub fn best_val_loss(rows: &[MetricsRow]) -> Option<f64> {
    rows.iter()
        .map(|r| r.val_loss)
        .filter(|v| v.is_finite())
        .reduce(f64::min)
}

/// A row of `runner ls`.
pub struct Listed {
    pub dir: PathBuf,
    pub name: String,
    pub run_id: String,
    pub summary: Option<Summary>,
}

/// Every run directory `<dir>/<name>/<run-id>/` (those with a resolved.toml), newest first.
pub fn list(dir: &Path) -> Result<Vec<Listed>> {
    let mut runs = Vec::new();
    let names = std::fs::read_dir(dir).with_context(|| format!("reading '{}'", dir.display()))?;
    for name in names.flatten().filter(|e| e.path().is_dir()) {
        let Ok(ids) = std::fs::read_dir(name.path()) else {
            continue;
        };
        for id in ids.flatten() {
            let path = id.path();
            if !RunPaths::new(&path).is_run() {
                continue;
            }
            runs.push(Listed {
                name: name.file_name().to_string_lossy().into_owned(),
                run_id: id.file_name().to_string_lossy().into_owned(),
                summary: read_summary(&path).ok(),
                dir: path,
            });
        }
    }
    runs.sort_by(|a, b| b.run_id.cmp(&a.run_id).then_with(|| a.name.cmp(&b.name)));
    Ok(runs)
}

pub fn format_list(runs: &[Listed]) -> String {
    let mut out = format!(
        "{:<20} {:<18} {:<5} {:<15} {:>8} {:>9} {:>8}\n",
        "name", "run_id", "arch", "status", "best_val", "test_exact", "wall_s"
    );
    let pct = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    for r in runs {
        let line = match &r.summary {
            Some(s) => format!(
                "{:<20} {:<18} {:<5} {:<15} {:>8} {:>9} {:>8.1}",
                r.name,
                r.run_id,
                s.arch,
                s.status.as_str(),
                pct(s.best_val_exact),
                pct(s.test_exact),
                s.wall_s
            ),
            None => format!(
                "{:<20} {:<18} {:<5} {:<15} {:>8} {:>9} {:>8}",
                r.name, r.run_id, "?", "running/unfinished", "-", "-", "-"
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

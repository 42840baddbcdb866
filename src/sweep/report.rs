//! What a study shows: `trials.csv`, `best_trial.toml`, and the `runner study` views.

use super::storage::{Sqlite, Storage, Trial, TrialState};
use crate::artifacts::write_atomic;
use crate::spec::Objective;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The best complete trial by the objective.
pub fn best(trials: &[Trial], objective: Objective) -> Option<&Trial> {
    let score = |t: &Trial| {
        let v = t.value.unwrap_or(f64::NAN);
        if objective.maximise() {
            v
        } else {
            -v
        }
    };
    trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
        .max_by(|a, b| score(a).total_cmp(&score(b)).then(b.number.cmp(&a.number)))
}

/// Rewrites `trials.csv` and `best_trial.toml` (atomically).
pub fn write(dir: &Path, db: &Sqlite, objective: Objective) -> Result<()> {
    let trials = db.trials()?;
    let keys: BTreeSet<&String> = trials.iter().flat_map(|t| t.params.keys()).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["number".to_string(), "state".to_string()];
    header.extend(keys.iter().map(|k| k.to_string()));
    header.extend(
        [
            objective.name(),
            "best_step",
            "wall_s",
            "attempts",
            "reason",
        ]
        .map(str::to_string),
    );
    w.write_record(&header)?;
    for t in &trials {
        let mut row = vec![t.number.to_string(), t.state.as_str().to_string()];
        row.extend(
            keys.iter()
                .map(|k| t.params.get(*k).map(value_text).unwrap_or_default()),
        );
        row.push(t.value.map(|v| format!("{v}")).unwrap_or_default());
        row.push(t.best_step.map(|s| s.to_string()).unwrap_or_default());
        row.push(t.wall_s.map(|s| format!("{s:.1}")).unwrap_or_default());
        row.push(t.attempts.to_string());
        row.push(t.reason.clone().unwrap_or_default());
        w.write_record(&row)?;
    }
    write_atomic(
        &dir.join("trials.csv"),
        &w.into_inner().context("finishing trials.csv")?,
    )?;
    if let Some(b) = best(&trials, objective) {
        let source = dir
            .join("trials")
            .join(b.number.to_string())
            .join("resolved.toml");
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("reading the best trial's spec '{}'", source.display()))?;
        let header = format!(
            "# Best trial {} of study '{}': {} = {}. Run it with `runner run <this file>`.\n",
            b.number,
            dir.display(),
            objective.name(),
            b.value.unwrap_or(f64::NAN)
        );
        write_atomic(&best_path(dir), format!("{header}{text}").as_bytes())?;
    }
    Ok(())
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn best_path(dir: &Path) -> PathBuf {
    dir.join("best_trial.toml")
}

fn open_existing(dir: &Path) -> Result<Sqlite> {
    let path = dir.join("study.db");
    if !path.is_file() {
        bail!("'{}' holds no study (no study.db)", dir.display());
    }
    Sqlite::open(&path)
}

/// `runner study show`: best trial, the top ten, counts by state, and every failure.
pub fn show(dir: &Path) -> Result<String> {
    let db = open_existing(dir)?;
    let trials = db.trials()?;
    let objective = match db.objective()?.as_str() {
        "val_loss" => Objective::ValLoss,
        _ => Objective::ValExact,
    };
    let mut out = String::new();
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    let _ = writeln!(
        out,
        "study {}: {} trials: {} complete, {} pruned, {} failed, {} running, {} interrupted",
        dir.display(),
        trials.len(),
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Failed),
        count(TrialState::Running),
        count(TrialState::Interrupted)
    );
    match best(&trials, objective) {
        Some(b) => {
            let _ = writeln!(
                out,
                "best: trial {} with {} = {:.4} ({})",
                b.number,
                objective.name(),
                b.value.unwrap_or(f64::NAN),
                best_path(dir).display()
            );
        }
        None => out.push_str("best: none complete yet\n"),
    }
    let mut ranked: Vec<&Trial> = trials.iter().filter(|t| t.value.is_some()).collect();
    ranked.sort_by(|a, b| {
        let (x, y) = (a.value.unwrap_or(f64::NAN), b.value.unwrap_or(f64::NAN));
        if objective.maximise() {
            y.total_cmp(&x)
        } else {
            x.total_cmp(&y)
        }
    });
    let _ = writeln!(
        out,
        "\n{:>6}  {:<9} {:>10}  params",
        "trial",
        "state",
        objective.name()
    );
    for t in ranked.iter().take(10) {
        let params: Vec<String> = t
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", value_text(v)))
            .collect();
        let _ = writeln!(
            out,
            "{:>6}  {:<9} {:>10.4}  {}",
            t.number,
            t.state.as_str(),
            t.value.unwrap_or(f64::NAN),
            params.join(" ")
        );
    }
    let failures: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .collect();
    if !failures.is_empty() {
        out.push_str("\nfailed:\n");
        for t in failures {
            let _ = writeln!(
                out,
                "{:>6}  {}",
                t.number,
                t.reason.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(out)
}

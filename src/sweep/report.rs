//! What a study shows: `trials.csv`, `best_trial.toml`, and the `runner study` views.

use super::storage::{Location, Storage, Trial, TrialState};
use crate::artifacts::{write_atomic, RunPaths};
use crate::error::UserError;
use crate::spec::{Objective, StudyStorage};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The best complete trial by the objective.
pub fn best(trials: &[Trial], objective: Objective) -> Option<&Trial> {
    let loss = |t: &Trial| objective.loss(t.value.unwrap_or(f64::NAN));
    trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
        .min_by(|a, b| loss(a).total_cmp(&loss(b)).then(a.number.cmp(&b.number)))
}

/// Rewrites `trials.csv` and `best_trial.toml` (atomically).
pub fn write(dir: &Path, db: &dyn Storage, objective: Objective) -> Result<()> {
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
            "host",
            "dir",
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
        row.push(t.host.clone().unwrap_or_default());
        row.push(t.dir.clone().unwrap_or_default());
        w.write_record(&row)?;
    }
    write_atomic(
        &dir.join("trials.csv"),
        &w.into_inner().context("finishing trials.csv")?,
    )?;
    if let Some(text) = best_toml(dir, db, &trials, objective)? {
        write_atomic(&best_path(dir), text.as_bytes())?;
    }
    Ok(())
}

/// The best trial's resolved spec with a header, runnable with `runner run`: from storage
/// (so any host can have it), else from the trial's run directory here (studies recorded
/// before specs were stored).
fn best_toml(
    dir: &Path,
    db: &dyn Storage,
    trials: &[Trial],
    objective: Objective,
) -> Result<Option<String>> {
    let Some(b) = best(trials, objective) else {
        return Ok(None);
    };
    let text = match db.trial_spec(b.number)? {
        Some(text) => text,
        None => {
            let source = RunPaths::new(super::trial_dir(dir, b.number)).resolved();
            std::fs::read_to_string(&source)
                .with_context(|| format!("reading the best trial's spec '{}'", source.display()))?
        }
    };
    let header = format!(
        "# Best trial {} of study '{}': {} = {}. Run it with `runner run <this file>`.\n",
        b.number,
        dir.display(),
        objective.name(),
        b.value.unwrap_or(f64::NAN)
    );
    Ok(Some(format!("{header}{text}")))
}

/// `runner study best`: the best trial's spec as TOML (runnable with `runner run`).
pub fn best_spec(dir: &Path, storage: &StudyStorage) -> Result<String> {
    let (_, db) = open_existing(dir, storage)?;
    let trials = db.trials()?;
    best_toml(dir, db.as_ref(), &trials, db.objective()?)?.ok_or_else(|| {
        UserError::input(dir.display().to_string(), "has no complete trial yet").into()
    })
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// "12 trials: 9 complete, 2 pruned, 1 failed, 0 running, 0 interrupted"
fn state_counts(trials: &[Trial]) -> String {
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    format!(
        "{} trials: {} complete, {} pruned, {} failed, {} running, {} interrupted",
        trials.len(),
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Failed),
        count(TrialState::Running),
        count(TrialState::Interrupted)
    )
}

pub fn best_path(dir: &Path) -> PathBuf {
    dir.join("best_trial.toml")
}

/// The study of `dir` in `storage`, read-only: looking at a study never changes it.
fn open_existing(
    dir: &Path,
    storage: &StudyStorage,
) -> Result<(Location, Box<dyn Storage + Send>)> {
    let location = Location::for_study(storage, dir)?;
    if !location.exists() {
        return Err(UserError::input(
            dir.display().to_string(),
            format!("holds no study (no {location}); `runner sweep SPEC` creates one"),
        )
        .into());
    }
    let db = location.open_read_only()?;
    // A PostgreSQL database may hold other studies but not this one.
    db.study()
        .map_err(|e| UserError::input(location.to_string(), format!("{e:#}")))?;
    Ok((location, db))
}

/// `runner study show`: best trial, the top ten, counts by state, and every failure.
pub fn show(dir: &Path, storage: &StudyStorage) -> Result<String> {
    let (location, db) = open_existing(dir, storage)?;
    let trials = db.trials()?;
    let objective = db.objective()?;
    let name = match location {
        Location::Sqlite(_) => dir.display().to_string(),
        pg => pg.to_string(),
    };
    let mut out = format!("study {name}: {}\n", state_counts(&trials));
    if collapse_warning(&trials).is_some() {
        out.push_str(
            "warning: the proposals collapsed into a small region; see `runner study report`\n",
        );
    }
    match best(&trials, objective) {
        Some(b) => {
            let _ = writeln!(
                out,
                "best: trial {} with {} = {:.4} (`runner study best` prints its spec)",
                b.number,
                objective.name(),
                b.value.unwrap_or(f64::NAN),
            );
        }
        None => out.push_str("best: none complete yet\n"),
    }
    let mut ranked: Vec<&Trial> = trials.iter().filter(|t| t.value.is_some()).collect();
    ranked.sort_by(|a, b| {
        let loss = |t: &Trial| objective.loss(t.value.unwrap_or(f64::NAN));
        loss(a).total_cmp(&loss(b))
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
                "{:>6}  {}{}",
                t.number,
                t.reason.as_deref().unwrap_or("?"),
                t.host
                    .as_deref()
                    .map(|h| format!(" (on {h})"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(out)
}

/// A parameter's values as numbers: numeric as they are (log10 when they span more than
/// a factor of 20), others by the index of their sorted distinct text.
fn numeric_axis(values: &[&toml::Value]) -> Vec<f64> {
    let nums: Option<Vec<f64>> = values
        .iter()
        .map(|v| match v {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        })
        .collect();
    match nums {
        Some(n) => {
            let (lo, hi) = n
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                    (a.min(*x), b.max(*x))
                });
            if lo > 0.0 && hi / lo > 20.0 {
                n.iter().map(|x| x.log10()).collect()
            } else {
                n
            }
        }
        None => {
            let mut distinct: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            distinct.sort();
            distinct.dedup();
            values
                .iter()
                .map(|v| {
                    distinct
                        .iter()
                        .position(|d| *d == v.to_string())
                        .unwrap_or(0) as f64
                })
                .collect()
        }
    }
}

fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut r = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        // Ties share their mean rank.
        let mean = (i + j) as f64 / 2.0;
        for k in i..=j {
            r[order[k]] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation; None when either side is constant.
pub fn spearman(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let (rx, ry) = (ranks(xs), ranks(ys));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let (vx, vy): (f64, f64) = (
        rx.iter().map(|a| (a - mx).powi(2)).sum(),
        ry.iter().map(|b| (b - my).powi(2)).sum(),
    );
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

/// `runner study report`: `report.md` with the best trial, counts and reasons, parameter
/// importance, and two figures (`best_so_far.png`, `parallel.png`).
pub fn study_report(dir: &Path, storage: &StudyStorage) -> Result<PathBuf> {
    let (_, db) = open_existing(dir, storage)?;
    // A study in PostgreSQL can be reported on a host that ran none of its trials: its
    // trials.csv and best_trial.toml are written here too, whole.
    std::fs::create_dir_all(dir).with_context(|| format!("creating '{}'", dir.display()))?;
    write(dir, db.as_ref(), db.objective()?)?;
    let trials = db.trials()?;
    let objective = db.objective()?;
    let complete: Vec<&Trial> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
        .collect();
    let mut md = format!(
        "# Study report: {}\n\n{}.\n\n",
        dir.display(),
        state_counts(&trials)
    );
    best_section(&mut md, &trials, objective, dir);
    if let Some(warning) = collapse_warning(&trials) {
        let _ = writeln!(md, "## Warning: the proposals collapsed\n\n{warning}\n");
    }
    failures_section(&mut md, &trials);
    if complete.len() >= 3 {
        importance_section(&mut md, &complete, objective, dir)?;
    }
    let points: Vec<(u64, f64)> = complete
        .iter()
        .map(|t| (t.number, t.value.unwrap_or(f64::NAN)))
        .collect();
    if !points.is_empty() {
        crate::compare::plot::best_so_far(&points, objective, &dir.join("best_so_far.png"))?;
        md.push_str("## Best so far\n\n![best value over trials](best_so_far.png)\n");
    }
    let path = dir.join("report.md");
    write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

fn best_section(md: &mut String, trials: &[Trial], objective: Objective, dir: &Path) {
    let Some(b) = best(trials, objective) else {
        md.push_str("No trial has completed yet.\n\n");
        return;
    };
    let _ = writeln!(
        md,
        "## Best trial: {}\n\n{} = {:.4}; its settings beyond the base spec:\n",
        b.number,
        objective.name(),
        b.value.unwrap_or(f64::NAN)
    );
    for (k, v) in &b.params {
        let _ = writeln!(md, "- `{k} = {v}`");
    }
    let _ = writeln!(
        md,
        "- `experiment.seed = {}` (derived from the study seed and the trial number)\n\n\
         Runnable: `runner run {}`\n",
        b.seed,
        best_path(dir).display()
    );
}

/// Trials proposed late in a study that all sit in a sliver of what the study explored:
/// the sign of a sampler that stopped learning (TPE that saw only its start-up trials did
/// this). The last third of the trials (at least 8) are compared with all of them, per
/// parameter, on the axis `numeric_axis` gives (log10 for wide positive ranges).
pub fn collapse_warning(trials: &[Trial]) -> Option<String> {
    const SLIVER: f64 = 0.15;
    let n = trials.len();
    let recent = (n / 3).max(8);
    if n < 12 || n < recent + 4 {
        return None;
    }
    let keys: BTreeSet<&String> = trials.iter().flat_map(|t| t.params.keys()).collect();
    let mut spans = Vec::new();
    for key in keys {
        let values: Vec<&toml::Value> = trials.iter().filter_map(|t| t.params.get(key)).collect();
        if values.len() != n {
            return None;
        }
        let axis = numeric_axis(&values);
        let span = |xs: &[f64]| {
            let (lo, hi) = xs
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                    (a.min(*x), b.max(*x))
                });
            hi - lo
        };
        let (all, late) = (span(&axis), span(&axis[n - recent..]));
        if all > 0.0 && late > SLIVER * all {
            return None;
        }
        spans.push(format!(
            "`{key}` {:.0}%",
            100.0 * late / all.max(f64::MIN_POSITIVE)
        ));
    }
    if spans.is_empty() {
        return None;
    }
    Some(format!(
        "The last {recent} trials ({}..{}) each sat within {:.0}% of the range the study \
         explored on every parameter ({}). A sampler that keeps proposing one small region \
         learns nothing more: check that trials are not all pruned or failing, or compare \
         with `sweep.sampler = \"random\"`.",
        trials[n - recent].number,
        trials[n - 1].number,
        100.0 * SLIVER,
        spans.join(", ")
    ))
}

/// Failed trials grouped by reason.
fn failures_section(md: &mut String, trials: &[Trial]) {
    let reasons: BTreeSet<String> = trials
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .filter_map(|t| t.reason.clone())
        .collect();
    if reasons.is_empty() {
        return;
    }
    md.push_str("## Failures\n\n");
    for reason in reasons {
        let numbers: Vec<String> = trials
            .iter()
            .filter(|t| t.reason.as_deref() == Some(reason.as_str()))
            .map(|t| t.number.to_string())
            .collect();
        let _ = writeln!(md, "- trials {}: {reason}", numbers.join(", "));
    }
    md.push('\n');
}

/// Spearman's ρ of each parameter with the objective, and the parallel-coordinates figure.
fn importance_section(
    md: &mut String,
    complete: &[&Trial],
    objective: Objective,
    dir: &Path,
) -> Result<()> {
    let keys: BTreeSet<String> = complete
        .iter()
        .flat_map(|t| t.params.keys().cloned())
        .collect();
    let scores: Vec<f64> = complete
        .iter()
        .map(|t| t.value.unwrap_or(f64::NAN))
        .collect();
    md.push_str("## Parameter importance\n\nSpearman rank correlation of each parameter with the objective over complete trials (|ρ| near 1: it matters).\n\n| parameter | ρ |\n|---|---|\n");
    let mut axes = Vec::new();
    let mut rows = Vec::new();
    for key in &keys {
        let values: Vec<&toml::Value> = complete.iter().filter_map(|t| t.params.get(key)).collect();
        if values.len() != complete.len() {
            continue;
        }
        let xs = numeric_axis(&values);
        rows.push((key.clone(), spearman(&xs, &scores)));
        axes.push((key.clone(), xs));
    }
    let strength = |rho: &Option<f64>| rho.map(f64::abs).unwrap_or(0.0);
    rows.sort_by(|a, b| strength(&b.1).total_cmp(&strength(&a.1)));
    for (key, rho) in rows {
        let rho = rho
            .map(|r| format!("{r:+.3}"))
            .unwrap_or_else(|| "constant".into());
        let _ = writeln!(md, "| `{key}` | {rho} |");
    }
    let names: Vec<String> = axes.iter().map(|(k, _)| k.clone()).collect();
    let scaled: Vec<Vec<f64>> = axes.iter().map(|(_, xs)| unit_scale(xs)).collect();
    let lines: Vec<(Vec<f64>, f64)> = (0..complete.len())
        .map(|i| {
            let values = scaled.iter().map(|xs| xs[i]).collect();
            (values, -objective.loss(scores[i]))
        })
        .collect();
    crate::compare::plot::parallel(&names, &lines, &dir.join("parallel.png"))?;
    md.push_str("\n![parameters against the objective](parallel.png)\n\n");
    Ok(())
}

/// `xs` mapped onto [0, 1] (0.5 where they are all equal).
fn unit_scale(xs: &[f64]) -> Vec<f64> {
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    xs.iter()
        .map(|x| if hi > lo { (x - lo) / (hi - lo) } else { 0.5 })
        .collect()
}

/// Every complete trial's (number, value) and the objective, read only: what a
/// best-so-far curve is drawn from (`runner serve`).
pub fn trial_values(dir: &Path, storage: &StudyStorage) -> Result<(Objective, Vec<(u64, f64)>)> {
    let (_, db) = open_existing(dir, storage)?;
    let objective = db.objective()?;
    let points = db
        .trials()?
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| Some((t.number, t.value.filter(|v| v.is_finite())?)))
        .collect();
    Ok((objective, points))
}

//! One run, shared by `runner run` and sweep trials: check the spec, then in a given run
//! directory write the resolved spec, the dataset, train, score the test split and write
//! the summary.

use crate::artifacts::{write_atomic, write_json, RunLock, RunPaths};
use crate::data::dataset::{self, Splits};
use crate::data::Vocab;
use crate::error::UserError;
use crate::eval::{self, EvalReport};
use crate::runs::Summary;
use crate::spec::{self, HumanDuration, Resolved, Spec};
use crate::train::checkpoint::{self, Slot};
use crate::train::{self, MetricsRow, Observer};
use crate::{backend, logging};
use anyhow::{Context, Result};
use burn::module::Module;
use burn::prelude::Device;
use std::path::Path;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Everything that can be checked before a file is written: the spec, the dataset size,
/// what this machine can hold, the device this build supports, and the run to start from
/// (`model.init_from`).
pub fn prepare(arg: &str, overrides: &[String]) -> Result<(Resolved, Device)> {
    let resolved = spec::load(arg, overrides)?;
    let device = check_machine(&resolved.spec, "").map_err(|e| resolved.blame(e))?;
    check_init_from(&resolved.spec, &device, "").map_err(|e| resolved.blame(e))?;
    Ok((resolved, device))
}

/// The dataset can be drawn, the run fits in memory, and the device exists in this build.
fn check_machine(spec: &Spec, origin: &str) -> Result<Device, UserError> {
    dataset::check_capacity(spec, origin)?;
    crate::limits::check_spec(spec, origin)?;
    backend::device(spec.experiment.device).map_err(|mut e| {
        e.origin = origin.to_string();
        e
    })
}

/// The checkpoint `model.init_from` names must exist and its weights must load into the
/// model this spec builds (same architecture, sizes and vocabulary).
fn check_init_from(spec: &Spec, device: &Device, origin: &str) -> Result<(), UserError> {
    let from = &spec.model.init_from;
    if from.is_empty() {
        return Ok(());
    }
    let fail = |m: String| UserError::new(origin, Some("model.init_from"), m);
    let dir = checkpoint::find(&RunPaths::new(from).checkpoints(), Slot::Best)
        .map_err(|e| fail(format!("'{from}': {e:#}")))?;
    let other = checkpoint::read_spec(&dir).map_err(|e| fail(e.to_string()))?;
    if other.model.arch != spec.model.arch {
        return Err(fail(format!(
            "'{from}' holds a {} model; this spec builds a {} (model.arch)",
            other.model.arch.name(),
            spec.model.arch.name()
        )));
    }
    if other.data.pairs != spec.data.pairs {
        return Err(fail(format!(
            "'{from}' was trained on pairs {:?}; this spec uses {:?} (data.pairs): the vocabularies differ",
            other.data.pairs, spec.data.pairs
        )));
    }
    let differing = size_keys_differing(&other, spec);
    if !differing.is_empty() {
        return Err(fail(format!(
            "'{from}' holds a model of other sizes: {}; use the same sizes to start from its weights",
            differing.join(", ")
        )));
    }
    // The sizes agree; loading proves the weights themselves fit.
    checkpoint::load_into(&dir, spec, device)
        .map(|_| ())
        .map_err(|e| fail(format!("{e:#}")))
}

/// The model keys whose values differ between two specs, as `key: theirs -> ours`.
fn size_keys_differing(theirs: &Spec, ours: &Spec) -> Vec<String> {
    let table = |s: &Spec| toml::Value::try_from(&s.model).expect("a ModelSpec serialises");
    let (a, b) = (table(theirs), table(ours));
    let (Some(a), Some(b)) = (a.as_table(), b.as_table()) else {
        return Vec::new();
    };
    let mut differing: Vec<String> = ours
        .model
        .arch
        .size_keys()
        .iter()
        .filter(|k| a.get(**k) != b.get(**k))
        .map(|k| {
            let show = |t: &toml::Table| t.get(*k).map(|v| v.to_string()).unwrap_or_default();
            format!("model.{k} {} -> {}", show(a), show(b))
        })
        .collect();
    let learned = ours.model.pos_encoding == crate::spec::PosEncoding::Learned;
    if learned && !ours.model.arch.is_recurrent() && theirs.max_positions() != ours.max_positions()
    {
        differing.push(format!(
            "positions (model.max_positions) {} -> {}",
            theirs.max_positions(),
            ours.max_positions()
        ));
    }
    differing
}

/// Runs `resolved` in `root` (an existing, empty directory) and writes every file of a run.
/// `started` is when the run began: the budget covers data generation too.
pub fn execute(
    resolved: &Resolved,
    device: &Device,
    root: &Path,
    started: Instant,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let spec = &resolved.spec;
    let run = RunPaths::new(root);
    let _lock = RunLock::acquire(&run)?;
    backend::set_threads(spec.experiment.threads);
    write_atomic(&run.resolved(), spec.to_toml().as_bytes())?;
    logging::log_to_file(&run.log())
        .with_context(|| format!("opening '{}'", run.log().display()))?;
    info!(
        spec = %resolved.path.display(),
        run_dir = %root.display(),
        arch = spec.model.arch.name(),
        budget = %spec.train.budget,
        "run"
    );
    for o in &resolved.overrides {
        info!(override_ = %o, "override");
    }
    let init = init_weights(spec, device)?;
    train_and_finish(
        spec,
        device,
        &run,
        started,
        spec.budget(),
        init,
        None,
        observer,
    )
}

/// The weights `model.init_from` names, on the training device; None for a fresh start.
fn init_weights(spec: &Spec, device: &Device) -> Result<Option<crate::model::Model>> {
    let from = spec.model.init_from.as_str();
    if from.is_empty() {
        return Ok(None);
    }
    let dir = checkpoint::find(&RunPaths::new(from).checkpoints(), Slot::Best)?;
    let loaded = checkpoint::load_into(&dir, spec, &device.clone().autodiff())?;
    info!(from = %dir.display(), "starting from the weights of another run");
    Ok(Some(loaded.model))
}

/// The dataset (drawn again from the seed), training, and what comes after.
#[allow(clippy::too_many_arguments)] // one call site each in execute and resume
fn train_and_finish(
    spec: &Spec,
    device: &Device,
    run: &RunPaths,
    started: Instant,
    budget: Duration,
    init: Option<crate::model::Model>,
    resume: Option<train::ResumeFrom>,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let vocab = dataset::vocab(spec);
    let splits = dataset::build_splits(spec, &vocab)?;
    if resume.is_none() {
        dataset::save(&run.dataset(), &splits, &vocab)?;
        info!(
            train = splits.train.len(),
            val = splits.val.len(),
            test = splits.test.len(),
            "dataset"
        );
    }
    let train_device = device.clone().autodiff();
    let input = train::FitInput {
        spec,
        vocab: &vocab,
        splits: &splits,
        device: &train_device,
        run,
        started,
        budget,
        init,
        resume,
    };
    let report = train::fit(input, observer)?;
    finish(spec, &vocab, &splits, device, run, report, started)
}

/// `runner resume`: continues a run from `checkpoints/last` (or, if that is damaged, the
/// best valid checkpoint) with the same data, optimiser state, step, schedule and random
/// state; a run killed before its first checkpoint starts again from step 0. The run's own
/// `resolved.toml` is the spec: environment variables do not change a run that exists.
/// `budget` is the training time allowed now; by default what the original budget has left.
pub fn resume(run_dir: &Path, budget: Option<HumanDuration>) -> Result<Summary> {
    let started = Instant::now();
    let run = RunPaths::existing(run_dir)?;
    let origin = run.resolved().display().to_string();
    let spec = spec::load_resolved(&run.resolved())?;
    let device = check_machine(&spec, &origin)?;
    let _lock = RunLock::acquire(&run)?;
    note_ignored_environment(&origin);
    backend::set_threads(spec.experiment.threads);
    let removed = crate::artifacts::remove_stray_temporaries(&run.root)?;
    let train_device = device.clone().autodiff();
    let resumable = checkpoint::load_resumable(&run.checkpoints(), &spec, &train_device)?;
    let position = resumable.as_ref().map(|r| r.loaded.state.position.clone());
    let trained_s = position.as_ref().map_or(0.0, |p| p.train_s);
    let remaining = remaining_budget(&spec, budget.as_ref(), trained_s)?;
    logging::log_to_file(&run.log())
        .with_context(|| format!("opening '{}'", run.log().display()))?;
    info!(run_dir = %run_dir.display(), step = position.as_ref().map_or(0, |p| p.step), budget_s = remaining.as_secs_f64(), "resume");
    if let Some(b) = &budget {
        info!(budget = %b, run_budget = %spec.train.budget, "budget given by --budget");
    }
    if removed > 0 {
        info!(
            files = removed,
            "removed temporary files an interrupted write left"
        );
    }
    let Some(resumable) = resumable else {
        warn!("no checkpoint yet (the run ended before its first evaluation): starting again from step 0");
        eprintln!("note: no checkpoint yet; the run starts again from step 0");
        let init = init_weights(&spec, &device)?;
        return train_and_finish(
            &spec,
            &device,
            &run,
            started,
            remaining,
            init,
            None,
            &mut train::Unobserved,
        );
    };
    let from = resume_from(resumable, &run);
    train_and_finish(
        &spec,
        &device,
        &run,
        started,
        remaining,
        None,
        Some(from),
        &mut train::Unobserved,
    )
}

/// The loop's starting point from a loaded checkpoint, with the metrics rows up to it;
/// says so when `last` could not be used.
fn resume_from(resumable: checkpoint::Resumable, run: &RunPaths) -> train::ResumeFrom {
    let loaded = resumable.loaded;
    if loaded.dir != run.checkpoint(Slot::Last) {
        let dir = loaded
            .dir
            .strip_prefix(&run.root)
            .unwrap_or(&loaded.dir)
            .display()
            .to_string();
        warn!(checkpoint = %dir, "checkpoints/last is missing or damaged: resuming from the best valid checkpoint");
        eprintln!("note: checkpoints/last is missing or damaged; resuming from {dir}");
    }
    let position = loaded.state.position;
    let rows = read_metrics_or_warn(&run.metrics())
        .into_iter()
        .filter(|r| r.step <= position.step)
        .collect();
    train::ResumeFrom {
        model: loaded.model,
        optim: resumable.optim,
        position,
        rows,
    }
}

/// A resume reads no `RUNNER_*` variables; say so when some are set.
fn note_ignored_environment(origin: &str) {
    let ignored = spec::spec_variables();
    if !ignored.is_empty() {
        eprintln!(
            "note: {} ignored: a resume continues the run as {origin} resolved it",
            ignored.join(", ")
        );
    }
}

/// What `--budget` gives, or what the run's own budget has left after `trained_s`.
fn remaining_budget(
    spec: &Spec,
    budget: Option<&HumanDuration>,
    trained_s: f64,
) -> Result<Duration, UserError> {
    if let Some(b) = budget {
        return Ok(b.get());
    }
    spec.budget()
        .checked_sub(Duration::from_secs_f64(trained_s))
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            UserError::input(
                "--budget",
                format!(
                    "the run's budget ({}) is used up ({trained_s:.0} s trained); give more with --budget",
                    spec.train.budget
                ),
            )
        })
}

/// The metrics rows a run wrote; a damaged tail is dropped with a warning.
fn read_metrics_or_warn(path: &Path) -> Vec<MetricsRow> {
    match crate::runs::read_metrics(path) {
        Ok(rows) => rows,
        Err((rows, problem)) => {
            warn!("{problem}; keeping the rows before it");
            rows
        }
    }
}

/// After training: the test split, `summary.json`, `training_history.png`.
fn finish(
    spec: &Spec,
    vocab: &Vocab,
    splits: &Splits,
    device: &Device,
    run: &RunPaths,
    report: train::FitReport,
    started: Instant,
) -> Result<Summary> {
    // A resumed run that did not improve on its best has it on disk only.
    let best_model = match report.best_model {
        Some(model) => Some(model),
        None => match checkpoint::find(&run.checkpoints(), Slot::Best) {
            Ok(dir) => Some(checkpoint::load_into(&dir, spec, device)?.model),
            Err(_) => None,
        },
    };
    let params = best_model
        .as_ref()
        .map(|m| m.num_params())
        .unwrap_or_else(|| crate::model::Model::init(spec, vocab.size(), device).num_params());
    let test = match &best_model {
        Some(model) => Some(final_test(model, spec, vocab, splits, device, run)?),
        None => None,
    };
    let summary = Summary {
        name: spec.experiment.name.clone(),
        run_id: run
            .root
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        arch: spec.model.arch.name().into(),
        status: report.stop_reason.status(),
        stop_reason: report.stop_reason,
        best_val_exact: report.best.as_ref().map(|b| b.val_exact),
        best_step: report.best.as_ref().map(|b| b.step),
        best_val_loss: crate::runs::best_val_loss(&report.rows),
        test_exact: test.as_ref().map(|t| t.exact),
        test_correct: test.as_ref().map(|t| t.correct),
        test_total: splits.test.len(),
        steps: report.steps,
        epochs: report.epochs,
        samples: report.samples,
        wall_s: started.elapsed().as_secs_f64(),
        train_s: report.train_s,
        samples_per_s: report.samples as f64 / report.train_s.max(1e-9),
        params,
        backend: backend::describe(spec.experiment.device),
        threads: spec.experiment.threads,
    };
    write_json(&run.summary(), &summary)?;
    let history = run.history_plot();
    if let Err(e) = crate::compare::plot::history(&report.rows, &spec.experiment.name, &history) {
        warn!("could not draw {}: {e:#}", history.display());
    }
    info!(
        status = ?summary.status,
        best_val_exact = ?summary.best_val_exact,
        test_exact = ?summary.test_exact,
        steps = summary.steps,
        wall_s = format!("{:.1}", summary.wall_s),
        "done"
    );
    Ok(summary)
}

/// Greedy decoding of the test split with the best model; writes eval.csv and report.txt.
fn final_test(
    model: &crate::model::Model,
    spec: &Spec,
    vocab: &Vocab,
    splits: &Splits,
    device: &Device,
    run: &RunPaths,
) -> Result<EvalReport> {
    let model = model.clone().to_device(device);
    let predictions = eval::predict(&model, &splits.test, vocab, spec.max_answer_len(), device);
    let report = EvalReport::from_predictions(&predictions);
    eval::write_outputs(&run.root, &predictions, &report)?;
    Ok(report)
}

//! One run, shared by `runner run` and sweep trials: check the spec, then in a given run
//! directory write the resolved spec, the dataset, train, score the test split and write
//! the summary.

use crate::artifacts::{write_atomic, write_json, RunPaths};
use crate::data::dataset::{self, Splits};
use crate::data::Vocab;
use crate::eval::{self, EvalReport};
use crate::runs::Summary;
use crate::spec::{self, Resolved, Spec, SpecError};
use crate::train::{self, checkpoint, Observer};
use crate::{backend, logging};
use anyhow::{Context, Result};
use burn::module::Module;
use burn::prelude::Device;
use std::path::Path;
use std::time::Instant;
use tracing::{info, warn};

/// Everything that can be checked before a file is written: the spec, the dataset size,
/// the device this build supports, and the run to start from (`model.init_from`).
pub fn prepare(arg: &str, overrides: &[String]) -> Result<(Resolved, Device)> {
    let resolved = spec::load(arg, overrides)?;
    let origin = resolved.path.display().to_string();
    dataset::check_capacity(&resolved.spec, &origin)?;
    let device = backend::device(&resolved.spec.experiment.device).map_err(|mut e| {
        e.origin = origin.clone();
        e
    })?;
    check_init_from(&resolved.spec, &origin)?;
    Ok((resolved, device))
}

/// The checkpoint `model.init_from` names must exist and hold the same architecture and
/// vocabulary; its sizes are checked when the weights load.
fn check_init_from(spec: &Spec, origin: &str) -> Result<(), SpecError> {
    let from = &spec.model.init_from;
    if from.is_empty() {
        return Ok(());
    }
    let fail = |m: String| SpecError::new(origin, Some("model.init_from"), m);
    let dir = checkpoint::find(&RunPaths::new(from).checkpoints(), "best")
        .map_err(|e| fail(format!("'{from}': {e:#}")))?;
    let text = std::fs::read_to_string(dir.join("spec.toml"))
        .map_err(|e| fail(format!("'{}': {e}", dir.display())))?;
    let other: Spec =
        toml::from_str(&text).map_err(|e| fail(format!("'{}': {e}", dir.display())))?;
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
    Ok(())
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
    backend::set_threads(spec.experiment.threads);
    let run = RunPaths::new(root);
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
    let vocab = dataset::vocab(spec);
    let splits = dataset::build_splits(spec, &vocab)?;
    dataset::save(&run.dataset(), &splits, &vocab)?;
    info!(
        train = splits.train.len(),
        val = splits.val.len(),
        test = splits.test.len(),
        "dataset"
    );

    let train_device = device.clone().autodiff();
    let init = match spec.model.init_from.as_str() {
        "" => None,
        from => {
            let dir = checkpoint::find(&RunPaths::new(from).checkpoints(), "best")?;
            let loaded = checkpoint::load_into(&dir, spec, &train_device).with_context(|| {
                format!(
                    "model.init_from: the weights in '{}' do not fit this spec's model",
                    dir.display()
                )
            })?;
            info!(from = %dir.display(), "starting from the weights of another run");
            Some(loaded.model)
        }
    };
    let input = train::FitInput {
        spec,
        vocab: &vocab,
        splits: &splits,
        device: &train_device,
        run: &run,
        started,
        budget: spec.budget(),
        init,
        resume: None,
    };
    let report = train::fit(input, observer)?;
    finish(spec, &vocab, &splits, device, &run, report, started)
}

/// `runner resume`: continues a run from `checkpoints/last` (or, if that is damaged, the
/// best valid checkpoint) with the same data, optimiser state, step, schedule and random
/// state. `budget` is the training time allowed now; by default what the original budget
/// has left.
pub fn resume(run_dir: &Path, budget: Option<std::time::Duration>) -> Result<Summary> {
    let started = Instant::now();
    let run = RunPaths::new(run_dir);
    if !run.resolved().is_file() {
        anyhow::bail!(
            "'{}' is not a run directory (no resolved.toml)",
            run_dir.display()
        );
    }
    let arg = run.resolved().display().to_string();
    let (resolved, device) = prepare(&arg, &[])?;
    let spec = &resolved.spec;
    backend::set_threads(spec.experiment.threads);
    let train_device = device.clone().autodiff();
    let (loaded, which) = checkpoint::load_resumable(&run.checkpoints(), spec, &train_device)?;
    if which != "last" {
        warn!(checkpoint = %which, "checkpoints/last is missing or damaged: resuming from the best valid checkpoint");
        eprintln!(
            "note: checkpoints/last is missing or damaged; resuming from checkpoints/{which}"
        );
    }
    let position = loaded.state.position.clone();
    let remaining = match budget {
        Some(b) => b,
        None => spec
            .budget()
            .checked_sub(std::time::Duration::from_secs_f64(position.train_s))
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the run's budget ({}) is used up ({:.0} s trained); give more with --budget",
                    spec.train.budget,
                    position.train_s
                )
            })?,
    };
    let rows = match crate::compare::read_metrics(&run.metrics()) {
        Ok(rows) => rows,
        Err((rows, problem)) => {
            warn!("{problem}; keeping the rows before it");
            rows
        }
    };
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.step <= position.step)
        .collect();
    logging::log_to_file(&run.log())
        .with_context(|| format!("opening '{}'", run.log().display()))?;
    info!(run_dir = %run_dir.display(), step = position.step, budget_s = remaining.as_secs_f64(), "resume");
    let vocab = dataset::vocab(spec);
    let splits = dataset::build_splits(spec, &vocab)?;
    let input = train::FitInput {
        spec,
        vocab: &vocab,
        splits: &splits,
        device: &train_device,
        run: &run,
        started,
        budget: remaining,
        init: None,
        resume: Some(train::ResumeFrom {
            model: loaded.model,
            optim_file: loaded.dir.join(checkpoint::OPTIM_FILE),
            position,
            rows,
        }),
    };
    let report = train::fit(input, &mut train::Unobserved)?;
    finish(spec, &vocab, &splits, &device, &run, report, started)
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
    let params = report
        .best_model
        .as_ref()
        .map(|m| m.num_params())
        .unwrap_or_else(|| crate::model::Model::init(spec, vocab.size(), device).num_params());
    let test = match &report.best_model {
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
        status: report.status,
        stop_reason: report.stop_reason.clone(),
        best_val_exact: report.best.as_ref().map(|b| b.val_exact),
        best_step: report.best.as_ref().map(|b| b.step),
        best_val_loss: report
            .rows
            .iter()
            .map(|r| r.val_loss)
            .filter(|v| v.is_finite())
            .reduce(f64::min),
        test_exact: test.as_ref().map(|t| t.exact_match),
        test_correct: test.as_ref().map(|t| t.correct),
        test_total: splits.test.len(),
        steps: report.steps,
        epochs: report.epochs,
        samples: report.samples,
        wall_s: started.elapsed().as_secs_f64(),
        train_s: report.train_s,
        samples_per_s: report.samples as f64 / report.train_s.max(1e-9),
        params,
        backend: backend::describe(&spec.experiment.device),
        threads: spec.experiment.threads,
    };
    write_json(&run.summary(), &summary)?;
    let history = run.root.join("training_history.png");
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

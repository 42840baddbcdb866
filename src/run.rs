//! One run, shared by `runner run` and sweep trials: check the spec, then in a given run
//! directory write the resolved spec, the dataset, train, score the test split and write
//! the summary.

use crate::artifacts::{write_atomic, write_json, RunPaths};
use crate::data::dataset::{self, Splits};
use crate::data::Vocab;
use crate::eval::{self, EvalReport};
use crate::runs::Summary;
use crate::spec::{self, Resolved, Spec};
use crate::train::{self, Observer};
use crate::{backend, logging};
use anyhow::{Context, Result};
use burn::module::Module;
use burn::prelude::Device;
use std::path::Path;
use std::time::Instant;
use tracing::info;

/// Everything that can be checked before a file is written: the spec, the dataset size,
/// and the device this build supports.
pub fn prepare(arg: &str, overrides: &[String]) -> Result<(Resolved, Device)> {
    let resolved = spec::load(arg, overrides)?;
    let origin = resolved.path.display().to_string();
    dataset::check_capacity(&resolved.spec, &origin)?;
    let device = backend::device(&resolved.spec.experiment.device).map_err(|mut e| {
        e.origin = origin.clone();
        e
    })?;
    Ok((resolved, device))
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
    let report = train::fit(
        spec,
        &vocab,
        &splits,
        &train_device,
        &run,
        started,
        observer,
    )?;
    let params = report
        .best_model
        .as_ref()
        .map(|m| m.num_params())
        .unwrap_or_else(|| crate::model::Model::init(spec, vocab.size(), device).num_params());
    let test = match &report.best_model {
        Some(model) => Some(final_test(model, spec, &vocab, &splits, device, &run)?),
        None => None,
    };
    let summary = Summary {
        name: spec.experiment.name.clone(),
        run_id: root
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
        tracing::warn!("could not draw {}: {e:#}", history.display());
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

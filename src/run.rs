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
/// (`model.init_from`) and the parts it names.
pub fn prepare(arg: &str, overrides: &[String]) -> Result<(Resolved, Device)> {
    let resolved = spec::load(arg, overrides)?;
    let device = check_machine(&resolved.spec, "").map_err(|e| resolved.blame(e))?;
    check_start(&resolved.spec, &device).map_err(|e| resolved.blame(e))?;
    Ok((resolved, device))
}

/// The dataset can be drawn, the run fits in memory, and the device exists in this build.
fn check_machine(spec: &Spec, origin: &str) -> Result<Device, UserError> {
    dataset::check_capacity(spec, origin)?;
    if spec.is_text() {
        crate::text::check(spec)?;
    }
    crate::limits::check_spec(spec, origin)?;
    backend::device(spec.experiment.device).map_err(|mut e| {
        e.origin = origin.to_string();
        e
    })
}

/// The model this spec starts from can be built: `model.init_from`'s weights fit (same
/// architecture and pairs, no parameter of the same name and another shape), and the parts
/// `model.reset`, `model.lora.targets` and `train.freeze` name exist.
fn check_start(spec: &Spec, device: &Device) -> Result<(), UserError> {
    crate::model::start::start(spec, spec.n_tokens(), device).map(|_| ())
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
    backend::set_kernels(spec.experiment.kernels);
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
    let init = initial_model(spec, device, &run)?;
    train_and_finish(
        spec,
        device,
        &run,
        started,
        spec.budget(),
        Some(init),
        None,
        observer,
    )
}

/// The model this run starts training (see `model::start`), on the training device; says
/// in the log and in `start.json` what it took from where.
fn initial_model(spec: &Spec, device: &Device, run: &RunPaths) -> Result<crate::model::Model> {
    let start = crate::model::start::start(spec, spec.n_tokens(), &device.clone().autodiff())?;
    let r = &start.report;
    if let Some(from) = &r.init_from {
        info!(from = %from, loaded = r.loaded.len(), reset = ?r.reset, fresh = ?r.fresh, "starting from the weights of another run");
    }
    if !r.frozen.is_empty() {
        info!(frozen = ?r.frozen, "frozen (train.freeze)");
    }
    if !r.adapted.is_empty() {
        info!(adapted = ?r.adapted, "LoRA adapters (model.lora); every base weight frozen");
    }
    write_json(&run.start_report(), r)?;
    Ok(start.model)
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
    // A text run's windows are read through the same layout-driven batcher, which never
    // consults the bracket vocabulary for them.
    let vocab = dataset::vocab(spec);
    let splits = if spec.is_text() {
        text_splits(spec, run, resume.is_none())?
    } else {
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
        splits
    };
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

/// A text run's windows as splits: no test split (the validation text is the held-out
/// part; `runner generate` is how a text model is tried). A new run saves its tokenizer.
fn text_splits(spec: &Spec, run: &RunPaths, new: bool) -> Result<Splits> {
    let saved = run.root.join(crate::text::TOKENIZER_FILE);
    let data = crate::text::prepare(spec, (!new).then_some(saved.as_path()))?;
    if new {
        crate::text::save(&data, &run.root, &run.dataset())?;
    }
    Ok(Splits {
        train: data.train,
        val: data.val,
        test: Vec::new(),
        stages: Vec::new(),
    })
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
    backend::set_kernels(spec.experiment.kernels);
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
        let init = initial_model(&spec, &device, &run)?;
        return train_and_finish(
            &spec,
            &device,
            &run,
            started,
            remaining,
            Some(init),
            None,
            &mut train::Unobserved,
        );
    };
    let from = resume_from(resumable, &spec, &run)?;
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
fn resume_from(
    resumable: checkpoint::Resumable,
    spec: &Spec,
    run: &RunPaths,
) -> Result<train::ResumeFrom> {
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
    // Checkpoints keep weights, not which of them train: LoRA bases come back frozen with
    // the adapters' structure, `train.freeze` is applied again.
    let (model, _) = crate::model::start::freeze(loaded.model, spec)?;
    Ok(train::ResumeFrom {
        model,
        optim: resumable.optim,
        position,
        rows,
    })
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
        .unwrap_or_else(|| crate::model::Model::init(spec, spec.n_tokens(), device).num_params());
    let start = read_start_report(run)?;
    let layout = crate::model::layout(spec, vocab);
    let test = match &best_model {
        // A language model's strings have no answers to decode.
        Some(model) if !layout.is_lm() => {
            Some(final_test(model, spec, vocab, splits, device, run)?)
        }
        _ => None,
    };
    let test_loss = best_model
        .as_ref()
        .filter(|_| !splits.test.is_empty())
        .map(|m| {
            let model = m.clone().to_device(device);
            eval::teacher_forced(&model, &splits.test, vocab, layout, device).loss
        });
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
        best_val_exact: report.best.as_ref().and_then(|b| b.val_exact),
        best_step: report.best.as_ref().map(|b| b.step),
        best_val_loss: crate::runs::best_val_loss(&report.rows),
        test_exact: test.as_ref().map(|t| t.exact),
        test_loss,
        test_correct: test.as_ref().map(|t| t.correct),
        test_total: splits.test.len(),
        steps: report.steps,
        epochs: report.epochs,
        samples: report.samples,
        wall_s: started.elapsed().as_secs_f64(),
        train_s: report.train_s,
        samples_per_s: report.samples as f64 / report.train_s.max(1e-9),
        tokens_per_s: spec.is_text().then(|| {
            (report.samples * spec.data.context_length as u64) as f64 / report.train_s.max(1e-9)
        }),
        params,
        trained_params: start.as_ref().map(|s| s.params.trained),
        start,
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

/// The `start.json` this run wrote when it began (none in runs older than it).
fn read_start_report(run: &RunPaths) -> Result<Option<crate::model::start::StartReport>> {
    let path = run.start_report();
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading '{}'", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        UserError::input(path.display().to_string(), format!("is corrupt: {e}")).into()
    })
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

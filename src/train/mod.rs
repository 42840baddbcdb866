//! The training loop: AdamW with clipping and a warm-up/decay schedule, stopping at the
//! budget, at `max_steps`, at `target_exact`, after `patience` evaluations without progress,
//! or on a non-finite loss. Evaluates on the validation set every `eval_every`, writes a
//! metrics row and the `best`/`last` checkpoints each time.

pub mod checkpoint;
mod schedule;

pub use schedule::Schedule;

use crate::artifacts::{write_csv, RunPaths};
use crate::data::batcher::{epoch_batches, make_batch};
use crate::data::dataset::Splits;
use crate::data::vocab::PAD;
use crate::data::Vocab;
use crate::eval::{teacher_forced, ValMetrics};
use crate::model::Model;
use crate::spec::{parse_duration, EvalEvery, Spec};
use anyhow::Result;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use checkpoint::TrainState;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// One row of `metrics.csv`, one per evaluation. The header is part of the interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetricsRow {
    pub step: u64,
    pub epoch: u64,
    pub elapsed_s: f64,
    pub samples: u64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_token_acc: f64,
    pub val_exact: f64,
    pub lr: f64,
}

pub const METRICS_HEADER: &str =
    "step,epoch,elapsed_s,samples,train_loss,val_loss,val_token_acc,val_exact,lr";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Stopped by `max_steps` or `patience`.
    Completed,
    BudgetReached,
    TargetReached,
    Diverged,
    Interrupted,
    /// Stopped by a sweep's pruner.
    Pruned,
}

/// What the loop did, for the summary.
pub struct FitReport {
    pub status: Status,
    /// Why it stopped, in a word: budget, max_steps, target, patience, diverged.
    pub stop_reason: String,
    pub rows: Vec<MetricsRow>,
    pub best: Option<MetricsRow>,
    /// The best model by val_exact (then val_loss), without autodiff.
    pub best_model: Option<Model>,
    pub steps: u64,
    pub epochs: u64,
    pub samples: u64,
    pub train_s: f64,
}

/// Trains a fresh model on `splits.train`, evaluating on `splits.val`. `started` is when
/// the run began: the budget covers data generation too.
pub fn fit(
    spec: &Spec,
    vocab: &Vocab,
    splits: &Splits,
    device: &Device,
    run: &RunPaths,
    started: Instant,
    observer: &mut dyn Observer,
) -> Result<FitReport> {
    let mut lp = Loop::new(spec, vocab, splits, device, run, started, observer);
    lp.run()
}

/// Sees every evaluation row as it is written; a sweep's pruner uses this to stop a trial.
pub trait Observer {
    /// Returns false to stop the run with status `pruned`.
    fn on_eval(&mut self, _row: &MetricsRow) -> bool {
        true
    }
}

/// The observer of a plain run.
pub struct Unobserved;

impl Observer for Unobserved {}

struct Loop<'a> {
    spec: &'a Spec,
    vocab: &'a Vocab,
    splits: &'a Splits,
    device: &'a Device,
    run: &'a RunPaths,
    started: Instant,
    deadline: Instant,
    schedule: Schedule,
    rows: Vec<MetricsRow>,
    best: Option<MetricsRow>,
    best_model: Option<Model>,
    since_best: u32,
    bar: ProgressBar,
    observer: &'a mut dyn Observer,
}

/// Stop decision after a step or an evaluation.
enum Stop {
    No,
    Yes(Status, &'static str),
}

impl<'a> Loop<'a> {
    fn new(
        spec: &'a Spec,
        vocab: &'a Vocab,
        splits: &'a Splits,
        device: &'a Device,
        run: &'a RunPaths,
        started: Instant,
        observer: &'a mut dyn Observer,
    ) -> Self {
        Self {
            spec,
            vocab,
            splits,
            device,
            run,
            started,
            deadline: started + spec.budget(),
            schedule: Schedule::new(&spec.train),
            rows: Vec::new(),
            best: None,
            best_model: None,
            since_best: 0,
            bar: progress_bar(spec),
            observer,
        }
    }

    fn run(&mut self) -> Result<FitReport> {
        let spec = self.spec;
        let t = &spec.train;
        self.device.seed(spec.experiment.seed);
        let mut model = Model::init(spec, self.vocab.size(), self.device);
        let layout = crate::model::layout(spec, self.vocab);
        let mut noise = rand_chacha::ChaCha8Rng::seed_from_u64(spec.experiment.seed ^ 0x0005_EED5);
        let mut optim = optimiser(spec);
        let loss_fn = CrossEntropyLossConfig::new()
            .with_pad_tokens(Some(vec![PAD as usize]))
            .init(self.device);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(spec.experiment.seed ^ 0x0BA7_C4E5);
        let lengths: Vec<usize> = self.splits.train.iter().map(|e| e.prefix.len()).collect();
        let eval_every = EvalTrigger::new(&t.eval_every);

        let (mut step, mut epoch, mut samples) = (0u64, 0u64, 0u64);
        let (mut loss_sum, mut loss_count) = (0.0f64, 0u64);
        let mut last_eval = Instant::now();
        let (status, reason) = 'outer: loop {
            epoch += 1;
            for indices in epoch_batches(&lengths, t.batch_size, &mut rng) {
                let lr = self.schedule.lr(step, self.progress(step));
                let refs: Vec<&crate::data::Example> =
                    indices.iter().map(|&i| &self.splits.train[i]).collect();
                let batch = make_batch(&refs, self.vocab, layout, self.device, Some(&mut noise));
                let logits = model.forward(&batch);
                let loss = loss_fn.forward(
                    logits.reshape([batch.size * batch.len, self.vocab.size()]),
                    batch.targets,
                );
                let loss_value = f64::from(loss.clone().into_scalar::<f32>());
                if diverged(loss_value, self.vocab.size()) {
                    warn!(
                        step,
                        loss = loss_value,
                        "training loss is not finite or exploded: diverged"
                    );
                    break 'outer (Status::Diverged, "diverged");
                }
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                step += 1;
                samples += batch.size as u64;
                loss_sum += loss_value;
                loss_count += 1;

                let stop = self.stop_after_step(step);
                if eval_every.due(step, last_eval) || !matches!(stop, Stop::No) {
                    let train_loss = loss_sum / loss_count.max(1) as f64;
                    (loss_sum, loss_count) = (0.0, 0);
                    let row = MetricsRow {
                        step,
                        epoch,
                        elapsed_s: self.started.elapsed().as_secs_f64(),
                        samples,
                        train_loss,
                        val_loss: 0.0,
                        val_token_acc: 0.0,
                        val_exact: 0.0,
                        lr,
                    };
                    let after_eval = self.evaluate(&model, &optim, row)?;
                    last_eval = Instant::now();
                    if let Stop::Yes(status, reason) = stop {
                        break 'outer (status, reason);
                    }
                    if let Stop::Yes(status, reason) = after_eval {
                        break 'outer (status, reason);
                    }
                }
                if step % 10 == 0 {
                    self.bar.set_position(self.bar_position(step));
                    self.bar
                        .set_message(format!("step {step} loss {:.4} lr {lr:.2e}", loss_value));
                }
            }
        };
        self.bar.finish_and_clear();
        crate::logging::attach_bar(None);
        if status == Status::Diverged && step > 0 {
            // Keep the last finite state for inspection; the best checkpoint is untouched.
            let state = self.train_state(step, epoch, samples, f64::NAN);
            checkpoint::save(
                &self.run.checkpoints(),
                "last",
                &model,
                &optim,
                &state,
                spec,
            )?;
        }
        Ok(FitReport {
            status,
            stop_reason: reason.to_string(),
            rows: std::mem::take(&mut self.rows),
            best: self.best.clone(),
            best_model: self.best_model.take(),
            steps: step,
            epochs: epoch,
            samples,
            train_s: self.started.elapsed().as_secs_f64(),
        })
    }

    /// Schedule progress: by steps when `max_steps` is set (reproducible), else by time.
    fn progress(&self, step: u64) -> f64 {
        let t = &self.spec.train;
        if t.max_steps > 0 {
            let after_warmup = t.max_steps.saturating_sub(t.warmup_steps).max(1);
            step.saturating_sub(t.warmup_steps) as f64 / after_warmup as f64
        } else {
            self.started.elapsed().as_secs_f64() / self.spec.budget().as_secs_f64()
        }
    }

    fn stop_after_step(&self, step: u64) -> Stop {
        let t = &self.spec.train;
        if t.max_steps > 0 && step >= t.max_steps {
            Stop::Yes(Status::Completed, "max_steps")
        } else if Instant::now() >= self.deadline {
            Stop::Yes(Status::BudgetReached, "budget")
        } else {
            Stop::No
        }
    }

    /// Scores the model on the validation set, records the row, saves checkpoints, and says
    /// whether the target or patience ends the run.
    fn evaluate(
        &mut self,
        model: &Model,
        optim: &ModuleOptimizer,
        mut row: MetricsRow,
    ) -> Result<Stop> {
        let valid = model.valid();
        let ValMetrics {
            loss,
            token_acc,
            exact,
        } = teacher_forced(
            &valid,
            &self.splits.val,
            self.vocab,
            crate::model::layout(self.spec, self.vocab),
            &valid_device(self.device),
        );
        row.val_loss = loss;
        row.val_token_acc = token_acc;
        row.val_exact = exact;
        info!(
            step = row.step,
            train_loss = format!("{:.4}", row.train_loss),
            val_loss = format!("{:.4}", loss),
            val_exact = format!("{:.4}", exact),
            elapsed_s = format!("{:.1}", row.elapsed_s),
            "eval"
        );
        self.bar.set_message(format!(
            "step {} loss {:.4} val_exact {:.3}",
            row.step, row.train_loss, exact
        ));
        let improved = self
            .best
            .as_ref()
            .is_none_or(|b| exact > b.val_exact || (exact == b.val_exact && loss < b.val_loss));
        let state = self.train_state(row.step, row.epoch, row.samples, exact);
        let checkpoints = self.run.checkpoints();
        if improved {
            checkpoint::save(&checkpoints, "best", model, optim, &state, self.spec)?;
            self.best = Some(row.clone());
            self.best_model = Some(valid);
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        checkpoint::save(&checkpoints, "last", model, optim, &state, self.spec)?;
        let keep_going = self.observer.on_eval(&row);
        self.rows.push(row);
        write_csv(&self.run.metrics(), &self.rows)?;
        if !keep_going {
            return Ok(Stop::Yes(Status::Pruned, "pruned"));
        }
        let t = &self.spec.train;
        if exact >= t.target_exact {
            return Ok(Stop::Yes(Status::TargetReached, "target"));
        }
        if t.patience > 0 && self.since_best >= t.patience {
            return Ok(Stop::Yes(Status::Completed, "patience"));
        }
        Ok(Stop::No)
    }

    fn train_state(&self, step: u64, epoch: u64, samples: u64, val_exact: f64) -> TrainState {
        TrainState {
            step,
            epoch,
            samples,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            val_exact,
        }
    }

    fn bar_position(&self, step: u64) -> u64 {
        if self.spec.train.max_steps > 0 {
            step
        } else {
            self.started.elapsed().as_millis() as u64
        }
    }
}

/// A non-finite loss, or one a hundred times worse than guessing uniformly (ln of the
/// vocabulary size): no run that is learning gets there, and a run that does never recovers.
fn diverged(loss: f64, vocab_size: usize) -> bool {
    !loss.is_finite() || loss > 100.0 * (vocab_size as f64).ln()
}

fn optimiser(spec: &Spec) -> ModuleOptimizer {
    let t = &spec.train;
    // burn's AdamW defaults (eps 1e-5, weight decay 1e-4) differ from PyTorch's: set both.
    let config = AdamWConfig::new()
        .with_epsilon(1e-8)
        .with_weight_decay(t.weight_decay as f32);
    let config = if t.grad_clip > 0.0 {
        config.with_grad_clipping(Some(GradientClippingConfig::Norm(t.grad_clip as f32)))
    } else {
        config
    };
    config.init()
}

/// The device without autodiff, for evaluation.
fn valid_device(device: &Device) -> Device {
    device.clone().without_autodiff()
}

fn progress_bar(spec: &Spec) -> ProgressBar {
    let len = if spec.train.max_steps > 0 {
        spec.train.max_steps
    } else {
        spec.budget().as_millis() as u64
    };
    if !crate::logging::training_bar() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {percent:>3}% {msg} [{elapsed_precise}, {eta} left]",
        )
        .expect("the template is valid"),
    );
    crate::logging::attach_bar(Some(bar.clone()));
    bar
}

/// When to evaluate: every N steps, or every interval of wall time.
enum EvalTrigger {
    Steps(u64),
    Every(Duration),
}

impl EvalTrigger {
    fn new(every: &EvalEvery) -> Self {
        match every {
            EvalEvery::Steps(n) => EvalTrigger::Steps(*n),
            EvalEvery::Time(text) => {
                EvalTrigger::Every(parse_duration(text).unwrap_or(Duration::from_secs(10)))
            }
        }
    }

    fn due(&self, step: u64, last: Instant) -> bool {
        match self {
            EvalTrigger::Steps(n) => step.is_multiple_of(*n),
            EvalTrigger::Every(d) => last.elapsed() >= *d,
        }
    }
}

//! The training loop: AdamW with clipping and a warm-up/decay schedule, stopping at the
//! budget, at `max_steps`, at `target_exact`, after `patience` evaluations without progress,
//! or on a non-finite loss. Evaluates on the validation set every `eval_every`, writes a
//! metrics row and the `best`/`last` checkpoints each time.

mod adamw;
pub mod checkpoint;
pub mod reinforce;
pub mod rules;
mod schedule;

pub use schedule::Schedule;

use crate::artifacts::{write_csv, RunPaths};
use crate::data::augment;
use crate::data::batcher::{epoch_batches, make_batch, Batch};
use crate::data::dataset::Splits;
use crate::data::Vocab;
use crate::eval::{teacher_forced, ValMetrics};
use crate::model::loss::Loss;
use crate::model::Model;
use crate::spec::{DecayOver, EvalEvery, Spec};
use anyhow::Result;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use checkpoint::{Slot, TrainState};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
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
    /// None for language-model runs (`data.task = "lm"`): strings have no answer to match.
    pub val_exact: Option<f64>,
    pub lr: f64,
    /// Curriculum stage of this row (0-based; as many as `data.stages` for the data's own
    /// distribution): the val_* columns are over that stage's validation set.
    #[serde(default)]
    pub stage: usize,
    /// REINFORCE runs: the mean reward of the training batches since the previous row.
    #[serde(default)]
    pub reward: Option<f64>,
    /// Language models: the validation perplexity, exp(val_loss) (per token of the
    /// tokenizer for text runs); empty for answer-scored runs.
    #[serde(default)]
    pub val_ppl: Option<f64>,
}

pub const METRICS_HEADER: &str =
    "step,epoch,elapsed_s,samples,train_loss,val_loss,val_token_acc,val_exact,lr,stage,reward,val_ppl";

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

/// Why a run stopped; each reason implies its [`Status`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Budget,
    MaxSteps,
    Target,
    Patience,
    Diverged,
    Interrupted,
    Pruned,
}

impl StopReason {
    pub fn status(self) -> Status {
        match self {
            StopReason::Budget => Status::BudgetReached,
            StopReason::MaxSteps | StopReason::Patience => Status::Completed,
            StopReason::Target => Status::TargetReached,
            StopReason::Diverged => Status::Diverged,
            StopReason::Interrupted => Status::Interrupted,
            StopReason::Pruned => Status::Pruned,
        }
    }

    /// The word written in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Budget => "budget",
            StopReason::MaxSteps => "max_steps",
            StopReason::Target => "target",
            StopReason::Patience => "patience",
            StopReason::Diverged => "diverged",
            StopReason::Interrupted => "interrupted",
            StopReason::Pruned => "pruned",
        }
    }
}

impl Status {
    /// The word written in `summary.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::BudgetReached => "budget_reached",
            Status::TargetReached => "target_reached",
            Status::Diverged => "diverged",
            Status::Interrupted => "interrupted",
            Status::Pruned => "pruned",
        }
    }
}

/// What the loop did, for the summary.
pub struct FitReport {
    pub stop_reason: StopReason,
    pub rows: Vec<MetricsRow>,
    pub best: Option<MetricsRow>,
    /// The best model by val_exact (then val_loss), without autodiff.
    pub best_model: Option<Model>,
    pub steps: u64,
    pub epochs: u64,
    pub samples: u64,
    /// Training seconds, including those before a resume.
    pub train_s: f64,
}

/// Where the loop stands. Saved in every checkpoint, so that a resumed run continues
/// exactly where it stopped: same batches, same masks, same schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Position {
    pub step: u64,
    pub epoch: u64,
    pub samples: u64,
    /// Index, in the current epoch's batch order, of the next batch.
    pub batch_index: usize,
    /// The batch-order generator as it was before it drew the current epoch's order.
    pub epoch_rng: ChaCha8Rng,
    /// The masking generator (masked-LM models) as it is now.
    pub noise_rng: ChaCha8Rng,
    /// Training seconds so far.
    pub train_s: f64,
    /// Training loss accumulated since the last evaluation row.
    pub loss_sum: f64,
    pub loss_count: u64,
    /// Curriculum stage (see `MetricsRow::stage`), and the step, training seconds and epoch
    /// count at which it began.
    #[serde(default)]
    pub stage: usize,
    #[serde(default)]
    pub stage_step: u64,
    #[serde(default)]
    pub stage_s: f64,
    #[serde(default)]
    pub stage_epoch: u64,
    /// REINFORCE: the batches' mean rewards accumulated since the last evaluation row.
    #[serde(default)]
    pub reward_sum: f64,
    #[serde(default)]
    pub reward_count: u64,
}

impl Position {
    fn start(seed: u64) -> Self {
        Self {
            step: 0,
            epoch: 0,
            samples: 0,
            batch_index: 0,
            epoch_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0BA7_C4E5),
            noise_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0005_EED5),
            train_s: 0.0,
            loss_sum: 0.0,
            loss_count: 0,
            stage: 0,
            stage_step: 0,
            stage_s: 0.0,
            stage_epoch: 0,
            reward_sum: 0.0,
            reward_count: 0,
        }
    }

    /// Moves to the next curriculum stage: a new epoch over its data, in an order drawn
    /// from a generator of its own.
    fn next_stage(&mut self, seed: u64, train_s: f64) {
        self.stage += 1;
        self.stage_step = self.step;
        self.stage_s = train_s;
        self.stage_epoch = self.epoch;
        self.batch_index = 0;
        self.epoch_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0BA7_C4E5 ^ self.stage as u64);
    }
}

/// A run to continue: its weights, optimiser state file, position and metrics so far.
pub struct ResumeFrom {
    /// On the training (autodiff) device.
    pub model: Model,
    pub optim: ModuleOptimizer,
    pub position: Position,
    pub rows: Vec<MetricsRow>,
}

/// What `fit` needs besides the observer.
pub struct FitInput<'a> {
    pub spec: &'a Spec,
    pub vocab: &'a Vocab,
    pub splits: &'a Splits,
    /// The training device (with autodiff).
    pub device: &'a Device,
    pub run: &'a RunPaths,
    /// When this process's part of the run began: the budget counts from here.
    pub started: Instant,
    /// Training time this process may use.
    pub budget: Duration,
    /// Weights to start from instead of a fresh initialisation (`model.init_from`).
    pub init: Option<Model>,
    pub resume: Option<ResumeFrom>,
}

/// Trains on `splits.train`, evaluating on `splits.val`.
pub fn fit(input: FitInput, observer: &mut dyn Observer) -> Result<FitReport> {
    let mut lp = Loop {
        deadline: input.started + input.budget,
        schedule: Schedule::new(&input.spec.train),
        rows: Vec::new(),
        best: None,
        best_model: None,
        since_best: 0,
        bar: progress_bar(),
        observer,
        offset_s: 0.0,
        total_s: input.budget.as_secs_f64(),
        input,
    };
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
    input: FitInput<'a>,
    deadline: Instant,
    schedule: Schedule,
    rows: Vec<MetricsRow>,
    best: Option<MetricsRow>,
    best_model: Option<Model>,
    since_best: u32,
    bar: ProgressBar,
    observer: &'a mut dyn Observer,
    /// Training seconds before this process (resumed runs), and the whole run's budget.
    offset_s: f64,
    total_s: f64,
}

/// Seed of the device's generator (dropout) at a step: a function of the run seed and the
/// step alone, so that a resumed run draws the same masks as an uninterrupted one.
fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<'a> Loop<'a> {
    fn run(&mut self) -> Result<FitReport> {
        let spec = self.input.spec;
        let device = self.input.device;
        let (mut model, mut optim, mut pos) = self.start();
        // A pruned run keeps its zeros (after pruning, or as its checkpoint holds them).
        let masks = (spec.train.sparsity > 0.0).then(|| crate::prune::Masks::of_zeros(&model));
        let layout = crate::model::layout(spec, self.input.vocab);
        let loss_fn = crate::model::training_loss_fn(spec, device);
        let by_reward = spec.train.objective == crate::spec::TrainObjective::Reinforce;
        let rules = rules::Rules::new(&spec.train.rules, self.input.vocab, spec.train.rule_weight);
        let mut order = EpochOrder::new(self.train_set(pos.stage), spec.train.batch_size, &pos);
        let eval_every = EvalTrigger::new(&spec.train.eval_every);
        let mut last_eval = Instant::now();
        let reason = loop {
            let lr = self.schedule.lr(pos.step, self.progress(pos.step));
            let train = self.train_set(pos.stage);
            let mut refs: Vec<&crate::data::Example> =
                order.next(&mut pos).iter().map(|&i| &train[i]).collect();
            let augmented = augment::apply(&refs, spec, self.input.vocab, &mut pos.noise_rng);
            if let Some(batch) = &augmented {
                refs = batch.iter().collect();
            }
            device.seed(step_seed(spec.experiment.seed, pos.step));
            let batch_size = refs.len();
            let (next, loss_value, ok) = if by_reward {
                let s = reinforce::step(
                    model,
                    &mut optim,
                    &refs,
                    self.input.vocab,
                    layout,
                    spec,
                    &mut pos.noise_rng,
                    device,
                    lr,
                    masks.as_ref(),
                );
                pos.reward_sum += s.reward;
                pos.reward_count += 1;
                (s.model, s.loss, s.ok)
            } else {
                let batch = make_batch(
                    &refs,
                    self.input.vocab,
                    layout,
                    device,
                    Some(&mut pos.noise_rng),
                );
                let penalty = rules.as_ref().map(|r| {
                    let (flags, scored) =
                        r.flags(&refs, &batch.answer_ids, batch.len, self.input.vocab);
                    (r, flags, scored)
                });
                step(
                    model,
                    &mut optim,
                    &loss_fn,
                    batch,
                    lr,
                    masks.as_ref(),
                    penalty,
                )
            };
            model = next;
            if !ok {
                warn!(
                    step = pos.step,
                    loss = loss_value,
                    "training loss is not finite or exploded: diverged"
                );
                break StopReason::Diverged;
            }
            self.count_step(&mut pos, batch_size, loss_value);
            let stop = self.stop_after_step(pos.step);
            if eval_every.due(pos.step, last_eval) || stop.is_some() {
                let stage = pos.stage;
                let after_eval = self.evaluate(&model, &optim, &mut pos, lr)?;
                last_eval = Instant::now();
                if pos.stage != stage {
                    order = EpochOrder::new(self.train_set(pos.stage), spec.train.batch_size, &pos);
                }
                if let Some(reason) = stop.or(after_eval) {
                    break reason;
                }
            }
            if pos.step % 10 == 0 {
                self.bar.set_position(self.bar_position(pos.step));
                self.bar.set_message(format!(
                    "step {} loss {loss_value:.4} lr {lr:.2e}",
                    pos.step
                ));
            }
        };
        self.close(reason, model, &optim, pos)
    }

    /// The model, optimiser and position to start from: a resumed run's, or fresh ones
    /// (with `model.init_from`'s weights if given).
    fn start(&mut self) -> (Model, ModuleOptimizer, Position) {
        let spec = self.input.spec;
        let device = self.input.device;
        device.seed(spec.experiment.seed);
        let (model, optim, pos) = match self.input.resume.take() {
            Some(r) => {
                self.restore_rows(r.rows);
                (r.model, r.optim, r.position)
            }
            None => {
                let model = self
                    .input
                    .init
                    .take()
                    .unwrap_or_else(|| Model::init(spec, spec.n_tokens(), device));
                (
                    model,
                    optimiser(spec),
                    Position::start(spec.experiment.seed),
                )
            }
        };
        self.offset_s = pos.train_s;
        self.total_s += pos.train_s;
        (model, optim, pos)
    }

    fn count_step(&self, pos: &mut Position, batch_size: usize, loss: f64) {
        pos.step += 1;
        pos.batch_index += 1;
        pos.samples += batch_size as u64;
        pos.loss_sum += loss;
        pos.loss_count += 1;
        pos.train_s = self.elapsed();
    }

    /// Ends the loop: a diverged run keeps its last finite state in `checkpoints/last`
    /// for inspection (the best checkpoint is untouched).
    fn close(
        &mut self,
        reason: StopReason,
        model: Model,
        optim: &ModuleOptimizer,
        pos: Position,
    ) -> Result<FitReport> {
        self.bar.finish_and_clear();
        crate::logging::attach_bar(None);
        if reason == StopReason::Diverged && pos.step > 0 {
            let state = self.train_state(&pos, None);
            let checkpoints = self.input.run.checkpoints();
            checkpoint::save(
                &checkpoints,
                Slot::Last,
                &model,
                Some(optim),
                &state,
                self.input.spec,
            )?;
        }
        Ok(FitReport {
            stop_reason: reason,
            rows: std::mem::take(&mut self.rows),
            best: self.best.clone(),
            best_model: self.best_model.take(),
            steps: pos.step,
            epochs: pos.epoch,
            samples: pos.samples,
            train_s: self.elapsed(),
        })
    }

    /// Training seconds of the whole run, resumed parts included.
    fn elapsed(&self) -> f64 {
        self.offset_s + self.input.started.elapsed().as_secs_f64()
    }

    /// Takes over the metrics of the run being resumed: its best row and patience count.
    fn restore_rows(&mut self, rows: Vec<MetricsRow>) {
        for row in &rows {
            if improves(row, self.best.as_ref()) {
                self.best = Some(row.clone());
                self.since_best = 0;
            } else {
                self.since_best += 1;
            }
        }
        self.rows = rows;
    }

    /// Schedule progress: by steps when `max_steps` is set (reproducible), else by time.
    fn progress(&self, step: u64) -> f64 {
        let t = &self.input.spec.train;
        let over_steps = |steps: u64| {
            let after_warmup = steps.saturating_sub(t.warmup_steps).max(1);
            step.saturating_sub(t.warmup_steps) as f64 / after_warmup as f64
        };
        match &t.decay_over {
            Some(DecayOver::Steps(n)) => over_steps(*n),
            _ if t.max_steps > 0 => over_steps(t.max_steps),
            Some(DecayOver::Time(d)) => self.elapsed() / d.as_secs_f64().max(1e-9),
            None => self.elapsed() / self.total_s.max(1e-9),
        }
    }

    fn stop_after_step(&self, step: u64) -> Option<StopReason> {
        let t = &self.input.spec.train;
        if crate::signals::stop_requested() {
            Some(StopReason::Interrupted)
        } else if t.max_steps > 0 && step >= t.max_steps {
            Some(StopReason::MaxSteps)
        } else if Instant::now() >= self.deadline {
            Some(StopReason::Budget)
        } else {
            None
        }
    }

    /// Scores the model on the validation set, records the row, saves checkpoints, and says
    /// whether the target or patience ends the run.
    fn evaluate(
        &mut self,
        model: &Model,
        optim: &ModuleOptimizer,
        pos: &mut Position,
        lr: f64,
    ) -> Result<Option<StopReason>> {
        let valid = model.valid();
        let row = self.validation_row(&valid, pos, lr);
        self.advance_stage(&row, pos);
        // The checkpoint keeps the loss accumulated so far when interrupted: a run stopped
        // here and resumed writes the same next row as one that never stopped. Resuming
        // from a regular evaluation starts a fresh accumulation, as the run itself does.
        let mut state = self.train_state(pos, row.val_exact);
        (pos.loss_sum, pos.loss_count) = (0.0, 0);
        (pos.reward_sum, pos.reward_count) = (0.0, 0);
        if !crate::signals::stop_requested() {
            (state.position.loss_sum, state.position.loss_count) = (0.0, 0);
            (state.position.reward_sum, state.position.reward_count) = (0.0, 0);
        }
        self.save_checkpoints(&row, valid, model, optim, &state)?;
        let keep_going = self.observer.on_eval(&row);
        self.rows.push(row.clone());
        write_csv(&self.input.run.metrics(), &self.rows)?;
        let t = &self.input.spec.train;
        Ok(if !keep_going {
            Some(StopReason::Pruned)
        } else if t.stop_at_target
            && row.stage == self.stages()
            && row.val_exact.is_some_and(|e| e >= t.target_exact)
        {
            Some(StopReason::Target)
        } else if t.patience > 0 && self.since_best >= t.patience {
            Some(StopReason::Patience)
        } else {
            None
        })
    }

    /// Curriculum stages before the data's own distribution.
    fn stages(&self) -> usize {
        self.input.splits.stages.len()
    }

    /// The training examples of `stage` (the data's own after the last listed stage).
    fn train_set(&self, stage: usize) -> &'a [crate::data::Example] {
        match self.input.splits.stages.get(stage) {
            Some(s) => &s.train,
            None => &self.input.splits.train,
        }
    }

    fn val_set(&self, stage: usize) -> &'a [crate::data::Example] {
        match self.input.splits.stages.get(stage) {
            Some(s) => &s.val,
            None => &self.input.splits.val,
        }
    }

    /// After an evaluation in a curriculum stage: moves on when the stage's condition holds
    /// (before the checkpoint is written, so that a resume continues in the new stage).
    fn advance_stage(&self, row: &MetricsRow, pos: &mut Position) {
        let spec = self.input.spec;
        let Some(stage) = spec.data.stages.get(pos.stage) else {
            return;
        };
        let reached = stage
            .until_exact
            .is_some_and(|u| row.val_exact.is_some_and(|e| e >= u));
        let used_up = stage.share.is_some_and(|share| {
            let t = &spec.train;
            if t.max_steps > 0 {
                (pos.step - pos.stage_step) as f64 >= share * t.max_steps as f64
            } else {
                self.elapsed() - pos.stage_s >= share * self.total_s
            }
        });
        if reached || used_up {
            info!(
                step = pos.step,
                from = pos.stage,
                to = pos.stage + 1,
                reason = if reached { "until_exact" } else { "share" },
                "curriculum: next stage"
            );
            pos.next_stage(spec.experiment.seed, self.elapsed());
        }
    }

    /// Scores `valid` on the validation set: the metrics row of this evaluation.
    fn validation_row(&self, valid: &Model, pos: &Position, lr: f64) -> MetricsRow {
        let spec = self.input.spec;
        let ValMetrics {
            loss,
            token_acc,
            exact,
        } = teacher_forced(
            valid,
            self.val_set(pos.stage),
            self.input.vocab,
            crate::model::layout(spec, self.input.vocab),
            &valid_device(self.input.device),
        );
        let row = MetricsRow {
            step: pos.step,
            epoch: pos.epoch,
            elapsed_s: self.elapsed(),
            samples: pos.samples,
            train_loss: pos.loss_sum / pos.loss_count.max(1) as f64,
            val_loss: loss,
            val_token_acc: token_acc,
            val_exact: exact,
            lr,
            stage: pos.stage,
            reward: (pos.reward_count > 0).then(|| pos.reward_sum / pos.reward_count as f64),
            val_ppl: exact.is_none().then(|| loss.exp()),
        };
        let shown = exact.map_or("-".into(), |e| format!("{e:.4}"));
        info!(
            step = row.step,
            train_loss = format!("{:.4}", row.train_loss),
            val_loss = format!("{:.4}", loss),
            val_exact = shown,
            elapsed_s = format!("{:.1}", row.elapsed_s),
            "eval"
        );
        self.bar.set_message(format!(
            "step {} loss {:.4} val_loss {loss:.4} val_exact {shown}",
            row.step, row.train_loss
        ));
        row
    }

    /// `best` when the row is the best so far (by val_exact, then val_loss), and `last`.
    fn save_checkpoints(
        &mut self,
        row: &MetricsRow,
        valid: Model,
        model: &Model,
        optim: &ModuleOptimizer,
        state: &TrainState,
    ) -> Result<()> {
        let spec = self.input.spec;
        let checkpoints = self.input.run.checkpoints();
        if improves(row, self.best.as_ref()) {
            checkpoint::save(&checkpoints, Slot::Best, model, Some(optim), state, spec)?;
            self.best = Some(row.clone());
            self.best_model = Some(valid);
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        checkpoint::save(&checkpoints, Slot::Last, model, Some(optim), state, spec)
    }

    fn train_state(&self, pos: &Position, val_exact: Option<f64>) -> TrainState {
        TrainState {
            step: pos.step,
            epoch: pos.epoch,
            samples: pos.samples,
            elapsed_s: self.elapsed(),
            val_exact,
            position: pos.clone(),
        }
    }

    /// Per mille of the run done: by steps or by time, whichever limit is nearer.
    fn bar_position(&self, step: u64) -> u64 {
        let by_time = self.elapsed() / self.total_s.max(1e-9);
        let max_steps = self.input.spec.train.max_steps;
        let by_steps = if max_steps > 0 {
            step as f64 / max_steps as f64
        } else {
            0.0
        };
        (1000.0 * by_time.max(by_steps).min(1.0)) as u64
    }
}

/// Is `row` better than `best`: a higher val_exact, or the same with a lower val_loss (for
/// language models, which have no val_exact, the lower val_loss).
/// A row of a later curriculum stage beats every row of an earlier one: the best model is
/// the best on the distribution the run ends with.
fn improves(row: &MetricsRow, best: Option<&MetricsRow>) -> bool {
    best.is_none_or(|b| {
        row.stage > b.stage
            || (row.stage == b.stage
                && (row.val_exact > b.val_exact
                    || (row.val_exact == b.val_exact && row.val_loss < b.val_loss)))
    })
}

/// One optimisation step on `batch`. Returns the model, the batch's loss, and false (with
/// the model untouched) when the loss diverged.
pub fn step(
    model: Model,
    optim: &mut ModuleOptimizer,
    loss_fn: &Loss,
    batch: Batch,
    lr: f64,
    masks: Option<&crate::prune::Masks>,
    penalty: Option<(&rules::Rules, Vec<f32>, usize)>,
) -> (Model, f64, bool) {
    let parts = parallel_parts(&batch);
    let (value, grads) = if parts > 1 && penalty.is_none() {
        let (value, vocab, grads) = gradients_in_parts(&model, loss_fn, batch, parts);
        (value, (!diverged(value, vocab)).then_some(grads))
    } else {
        gradients(&model, loss_fn, batch, penalty)
    };
    let Some(mut grads) = grads else {
        return (model, value, false);
    };
    if let Some(masks) = masks {
        masks.apply(&mut grads);
    }
    (optim.step(lr, model, grads), value, true)
}

/// The loss of `batch` (with the rules' penalty) and, unless it diverged, its gradients.
fn gradients(
    model: &Model,
    loss_fn: &Loss,
    batch: Batch,
    penalty: Option<(&rules::Rules, Vec<f32>, usize)>,
) -> (f64, Option<GradientsParams>) {
    let logits = model.forward(&batch); // [batch, len, vocab]
    let [b, t, v] = logits.dims();
    let logits = logits.reshape([b * t, v]);
    let mut loss = loss_fn.forward(logits.clone(), batch.targets);
    if let Some((rules, flags, scored)) = penalty {
        loss = loss + rules.penalty(logits, flags, scored) * rules.weight;
    }
    let value = f64::from(loss.clone().into_scalar::<f32>());
    if diverged(value, v) {
        return (value, None);
    }
    (
        value,
        Some(GradientsParams::from_grads(loss.backward(), model)),
    )
}

/// Rows of a part below which splitting a batch across threads costs more than it saves.
const MIN_PART_ROWS: usize = 8;

/// Into how many parts a training step splits `batch`: one per thread of the CPU pool
/// (`experiment.threads`), as long as each part keeps [`MIN_PART_ROWS`] rows. At these
/// model sizes no single operation is large enough to keep two cores busy, and burn's
/// backward pass runs on one thread: the batch's rows are what divides.
fn parallel_parts(batch: &Batch) -> usize {
    if !crate::backend::is_cpu(&batch.tokens.device()) {
        return 1;
    }
    rayon::current_num_threads()
        .min(batch.size / MIN_PART_ROWS)
        .max(1)
}

/// The loss of `batch`, the vocabulary size and the loss's gradients, with the batch's rows
/// split into `parts`: each part's forward and backward pass on its own thread through its
/// own copy of the model (a fork: the same weights under fresh autodiff nodes, so the
/// parts' graphs share nothing and do not serialise on one lock), the gradients summed in
/// part order (repeatable). Each part's loss is weighted by its share of the scored
/// targets, so the sums are the whole batch's mean loss and its gradient.
fn gradients_in_parts(
    model: &Model,
    loss_fn: &Loss,
    batch: Batch,
    parts: usize,
) -> (f64, usize, GradientsParams) {
    use rayon::prelude::*;
    let device = batch.tokens.device();
    let split = batch.split_rows(parts);
    let total = split.iter().map(|(_, n)| n).sum::<usize>().max(1) as f64;
    let results: Vec<(f64, usize, GradientsParams)> = split
        .into_par_iter()
        .filter(|(_, scored)| *scored > 0)
        .map(|(part, scored)| {
            let share = scored as f64 / total;
            let fork = model.clone().fork(&device);
            let logits = fork.forward(&part);
            let [b, t, v] = logits.dims();
            let loss = loss_fn.forward(logits.reshape([b * t, v]), part.targets);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            let grads = GradientsParams::from_grads(loss.mul_scalar(share).backward(), &fork);
            (value * share, v, grads)
        })
        .collect();
    let value = results.iter().map(|(value, _, _)| value).sum();
    let vocab = results.first().map_or(2, |(_, v, _)| *v);
    let mut sum = burn::optim::GradientsAccumulator::<Model>::new();
    for (_, _, grads) in results {
        sum.accumulate(model, grads);
    }
    (value, vocab, sum.grads())
}

/// One optimiser step down `loss`'s gradient; a pruned run's pruned weights get none.
pub(crate) fn descend(
    model: Model,
    optim: &mut ModuleOptimizer,
    loss: burn::prelude::Tensor<1>,
    lr: f64,
    masks: Option<&crate::prune::Masks>,
) -> Model {
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    if let Some(masks) = masks {
        masks.apply(&mut grads);
    }
    optim.step(lr, model, grads)
}

/// A non-finite loss, or one a hundred times worse than guessing uniformly (ln of the
/// vocabulary size): no run that is learning gets there, and a run that does never recovers.
fn diverged(loss: f64, vocab_size: usize) -> bool {
    !loss.is_finite() || loss > 100.0 * (vocab_size as f64).ln()
}

pub fn optimiser(spec: &Spec) -> ModuleOptimizer {
    let t = &spec.train;
    // burn's AdamW defaults (eps 1e-5, weight decay 1e-4) differ from PyTorch's: set both.
    let max_norm = (t.grad_clip > 0.0).then_some(t.grad_clip as f32);
    ModuleOptimizer::from(adamw::AdamW::new(1e-8, t.weight_decay as f32, max_norm))
}

/// The device without autodiff, for evaluation.
fn valid_device(device: &Device) -> Device {
    device.clone().without_autodiff()
}

fn progress_bar() -> ProgressBar {
    if !crate::logging::training_bar() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {percent:>3}% {msg} [{elapsed_precise}, {eta} left]",
        )
        .expect("the template is valid"),
    );
    crate::logging::attach_bar(Some(bar.clone()));
    bar
}

/// The order of training batches, epoch after epoch: bucketed by length, shuffled by a
/// generator whose state before each epoch is saved, so a resume redraws the same order.
struct EpochOrder {
    lengths: Vec<usize>,
    batch_size: usize,
    rng: ChaCha8Rng,
    batches: Vec<Vec<usize>>,
}

impl EpochOrder {
    fn new(train: &[crate::data::Example], batch_size: usize, pos: &Position) -> Self {
        let lengths: Vec<usize> = train.iter().map(|e| e.prefix.len()).collect();
        let mut rng = pos.epoch_rng.clone();
        // A resumed run redraws the order of the epoch it was in (if its stage has one).
        let batches = if pos.epoch == pos.stage_epoch {
            Vec::new()
        } else {
            epoch_batches(&lengths, batch_size, &mut rng)
        };
        Self {
            lengths,
            batch_size,
            rng,
            batches,
        }
    }

    /// The indices of the batch at `pos`, starting a new epoch when the current one ends.
    fn next(&mut self, pos: &mut Position) -> &[usize] {
        if pos.batch_index >= self.batches.len() {
            pos.epoch_rng = self.rng.clone();
            self.batches = epoch_batches(&self.lengths, self.batch_size, &mut self.rng);
            pos.epoch += 1;
            pos.batch_index = 0;
        }
        &self.batches[pos.batch_index]
    }
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
            EvalEvery::Time(interval) => EvalTrigger::Every(interval.get()),
        }
    }

    fn due(&self, step: u64, last: Instant) -> bool {
        match self {
            EvalTrigger::Steps(n) => step.is_multiple_of(*n),
            EvalTrigger::Every(d) => last.elapsed() >= *d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Status;

    /// The largest difference between two sets of gradients of `model`'s parameters,
    /// relative to the largest gradient, and how many parameters had both.
    struct Compare<'a> {
        a: &'a super::GradientsParams,
        b: &'a super::GradientsParams,
        worst: f32,
        seen: usize,
    }

    impl burn::module::ModuleVisitor for Compare<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<super::Tensor<D>>) {
            let (Some(a), Some(b)) = (self.a.get::<D>(param.id), self.b.get::<D>(param.id)) else {
                return;
            };
            let scale = b.clone().abs().max().into_scalar::<f32>().max(1e-3);
            let diff = (a - b).abs().max().into_scalar::<f32>() / scale;
            self.worst = self.worst.max(diff);
            self.seen += 1;
        }
    }

    #[test]
    fn a_batch_split_across_threads_gives_the_whole_batchs_loss_and_gradients() {
        use crate::data::{batcher::make_batch, dataset, Example};
        use crate::model::{layout, loss_fn, Model};
        use burn::module::Module;
        use burn::prelude::*;
        let device = Device::flex().autodiff();
        for &arch in crate::spec::Arch::all() {
            let mut spec = crate::spec::Spec::default();
            spec.model.arch = arch;
            spec.model.d_model = 16;
            spec.model.d_hidden = 16;
            let vocab = dataset::vocab(&spec);
            // 19 rows: parts of 7, 7 and 5.
            let examples = dataset::fresh(&spec, &vocab, 19, 3);
            let refs: Vec<&Example> = examples.iter().collect();
            let batch = make_batch(&refs, &vocab, layout(&spec, &vocab), &device, None);
            let model = Model::init(&spec, vocab.size(), &device);
            let loss_fn = loss_fn(&device);
            let logits = model.forward(&batch);
            let [b, t, v] = logits.dims();
            let loss = loss_fn.forward(logits.reshape([b * t, v]), batch.targets.clone());
            let whole_value = f64::from(loss.clone().into_scalar::<f32>());
            let whole = super::GradientsParams::from_grads(loss.backward(), &model);
            let (value, vocab_size, parts) = super::gradients_in_parts(&model, &loss_fn, batch, 3);
            assert_eq!(vocab_size, v);
            assert!(
                (value - whole_value).abs() < 1e-5,
                "{arch:?}: loss {value} vs {whole_value}"
            );
            let mut compare = Compare {
                a: &parts,
                b: &whole,
                worst: 0.0,
                seen: 0,
            };
            model.visit(&mut compare);
            assert!(
                compare.seen > 4,
                "{arch:?}: {} parameters compared",
                compare.seen
            );
            assert!(
                compare.worst < 1e-4,
                "{arch:?}: gradients differ by {:e}",
                compare.worst
            );
        }
    }

    #[test]
    fn stop_reason_words_match_summary_json() {
        use super::StopReason::*;
        for r in [
            Budget,
            MaxSteps,
            Target,
            Patience,
            Diverged,
            Interrupted,
            Pruned,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn status_words_match_summary_json() {
        for s in [
            Status::Completed,
            Status::BudgetReached,
            Status::TargetReached,
            Status::Diverged,
            Status::Interrupted,
            Status::Pruned,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}

//! `runner sweep`: a resumable hyperparameter study. Every trial is a full run in
//! `experiments/<study>/trials/<number>/`; the study lives in `study.db`. Workers (this
//! process, `--jobs` child processes, or other `runner sweep` processes on the same study)
//! claim trials from storage, so a study survives crashes and restarts, and counts its
//! trials across all of them.

pub mod copy;
pub mod pg_connect;
pub mod postgres;
pub mod pruner;
mod report;
pub mod sampler;
pub mod space;
pub mod storage;

pub use report::{best_path, best_spec, show, study_report, trial_values};

use crate::artifacts::RunPaths;
use crate::error::UserError;
use crate::run::{execute, prepare};
use crate::spec::{self, Resolved, SamplerKind, Spec};
use crate::train::{MetricsRow, Observer};
use anyhow::{Context, Result};
use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressStyle};
use pruner::Pruner;
use rand::SeedableRng;
use sampler::{Evidence, Observation};
use space::Space;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Location, Outcome, Proposal, Storage, Trial, TrialState, Worker};
use tracing::{info, warn};

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    pub spec: String,
    /// Overrides as key.path=value (sweep.* keys included).
    pub overrides: Vec<String>,
    /// Trials at once, as worker processes (default: sweep.jobs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Print the space, the trial count and a time estimate; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Resume even though the space differs from the study's.
    #[arg(long)]
    pub allow_space_change: bool,
    /// Where the study lives (sweep.storage): "sqlite" (study.db in the study directory)
    /// or a PostgreSQL URL shared by workers on several machines; no password in it (use
    /// PGPASSWORD or ~/.pgpass).
    #[arg(long)]
    pub storage: Option<String>,
    /// Internal: run as a worker of a parent sweep.
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// Everything a worker needs, checked once.
struct Study {
    args: SweepArgs,
    resolved: Resolved,
    device: Device,
    space: Space,
    dir: PathBuf,
    total: usize,
}

impl Study {
    fn spec(&self) -> &Spec {
        &self.resolved.spec
    }

    /// Where the study's records live (checked when the spec was read).
    fn location(&self) -> Location {
        Location::for_study(&self.spec().sweep.storage, &self.dir)
            .expect("sweep.storage was checked when the spec was loaded")
    }
}

/// Runs (or resumes) the study; returns what to print: the dry run's plan, or the study's
/// standing when its trials are done (a worker returns nothing).
pub fn sweep(args: SweepArgs) -> Result<String> {
    let study = open(args)?;
    if study.args.dry_run {
        return Ok(dry_run(&study));
    }
    std::fs::create_dir_all(study.dir.join("trials"))
        .with_context(|| format!("creating study directory '{}'", study.dir.display()))?;
    let db = study.location().open()?;
    let db = db.as_ref();
    let stored = db.open_study(
        &study.spec().experiment.name,
        &study.space.fingerprint(),
        study.spec().sweep.objective,
    )?;
    if stored != study.space.fingerprint() && !study.args.allow_space_change {
        return Err(UserError::new(
            study.resolved.path.display().to_string(),
            Some("sweep.space"),
            format!(
                "differs from the space the study in '{}' was created with; resuming would mix \
                 two searches. Use another experiment.name, or --allow-space-change to go on anyway",
                study.dir.display()
            ),
        )
        .into());
    }
    check_trial_dirs(&study.dir, &study.location(), &db.trials()?)?;
    if study.args.worker {
        crate::logging::set_training_bar(false);
        return work(&study, db).map(|()| String::new());
    }
    let jobs = study.args.jobs.unwrap_or(study.spec().sweep.jobs).max(1);
    info!(study = %study.dir.display(), storage = %study.location(), trials = study.total, jobs, "sweep");
    let children = spawn_workers(&study, jobs - 1)?;
    crate::logging::set_training_bar(false);
    let done = Arc::new(AtomicBool::new(false));
    let monitor = spawn_monitor(&study, done.clone());
    let result = work(&study, db);
    for (k, mut child) in children.into_iter().enumerate() {
        let status = child.wait()?;
        if !status.success() {
            warn!(
                worker = k + 1,
                ?status,
                "a worker process failed; see its log in the study directory"
            );
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    result?;
    report::write(&study.dir, db, study.spec().sweep.objective)?;
    show(&study.dir, &study.spec().sweep.storage)
}

/// The run directory of trial `number` of the study in `study_dir`.
pub fn trial_dir(study_dir: &Path, number: u64) -> PathBuf {
    study_dir.join("trials").join(number.to_string())
}

/// Refuses a study directory whose `trials/` holds runs the database does not know: its
/// `study.db` was replaced or emptied, and the next trials would overwrite them.
fn check_trial_dirs(dir: &Path, location: &Location, trials: &[Trial]) -> Result<()> {
    let known: std::collections::HashSet<String> =
        trials.iter().map(|t| t.number.to_string()).collect();
    let trials_dir = dir.join("trials");
    let mut unknown: Vec<String> = std::fs::read_dir(&trials_dir)
        .with_context(|| format!("reading '{}'", trials_dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !known.contains(name))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(UserError::input(
        trials_dir.display().to_string(),
        format!(
            "holds trial directories the study database ({location}) does not know ({}): it \
             was replaced or emptied. Nothing was changed: restore it, or move the study \
             directory away to start afresh",
            unknown.join(", ")
        ),
    )
    .into())
}

/// Loads the spec and the space, and checks every edge of the space against the base spec
/// before anything runs.
fn open(mut args: SweepArgs) -> Result<Study> {
    // `--storage` is `sweep.storage` given last: every worker and trial sees the same.
    if let Some(storage) = args.storage.take() {
        args.overrides
            .push(format!("sweep.storage={}", toml::Value::String(storage)));
    }
    let (resolved, device) = prepare(&args.spec, &args.overrides)?;
    let origin = resolved.path.display().to_string();
    let space = Space::from_spec(&resolved.spec.sweep, &origin)?;
    for (key, value) in space.extremes() {
        let mut overrides = args.overrides.clone();
        overrides.push(format!("{key}={value}"));
        spec::load(&args.spec, &overrides).map_err(|e| {
            UserError::new(
                &origin,
                Some(&format!("sweep.space.\"{key}\"")),
                format!("the value {value} does not make a valid spec: {e}"),
            )
        })?;
    }
    let s = &resolved.spec;
    let is_lm = s.data.task == spec::Task::Lm || s.is_text();
    if is_lm && s.sweep.objective != spec::Objective::ValLoss {
        return Err(UserError::new(
            &origin,
            Some("sweep.objective"),
            "a language model (data.task = \"lm\", or a text run) has no exact match to \
             reach: use objective = \"val_loss\"",
        )
        .into());
    }
    let dir = Path::new(&s.experiment.out_dir).join(&s.experiment.name);
    let total = match s.sweep.sampler {
        SamplerKind::Grid => s.sweep.trials.min(space.grid().len()),
        _ => s.sweep.trials,
    };
    Ok(Study {
        args,
        resolved,
        device,
        space,
        dir,
        total,
    })
}

fn dry_run(study: &Study) -> String {
    let s = study.spec();
    let mut out = format!(
        "study '{}' in {}\nsampler {:?}, pruner {:?}, objective {}\n",
        s.experiment.name,
        study.dir.display(),
        s.sweep.sampler,
        s.sweep.pruner,
        s.sweep.objective.name()
    );
    for (key, p) in &study.space.params {
        out.push_str(&format!("  {key}: {p:?}\n"));
    }
    if s.sweep.sampler == SamplerKind::Grid {
        out.push_str(&format!("grid points: {}\n", study.space.grid().len()));
    }
    let jobs = study.args.jobs.unwrap_or(s.sweep.jobs).max(1);
    let rounds = study.total.div_ceil(jobs) as u32;
    let upper = s.budget().saturating_mul(rounds);
    out.push_str(&format!(
        "trials: {} with {jobs} job(s); at most {} ({} per trial, train.budget)\n",
        study.total,
        humantime::format_duration(upper),
        s.train.budget
    ));
    out
}

/// Claims and runs trials until the study has all of them.
fn work(study: &Study, db: &dyn Storage) -> Result<()> {
    let trials_dir = std::path::absolute(study.dir.join("trials"))
        .context("finding the study's trials directory")?;
    let me = Worker {
        trials_dir: Some(trials_dir),
        ..Worker::this_process()
    };
    let grace_period = study.spec().sweep.grace_period.get();
    while let Some(trial) = db.claim(study.total, &me, grace_period, &mut |trials| {
        propose(study, trials)
    })? {
        run_trial(study, db, &trial)?;
        report::write(&study.dir, db, study.spec().sweep.objective)?;
        if crate::signals::stop_requested() {
            return Err(crate::signals::Interrupted(format!(
                "trial {} will be re-run when the same `runner sweep` starts again",
                trial.number
            ))
            .into());
        }
    }
    Ok(())
}

/// Per-trial seed: a function of the study seed and the trial number only, so parallel and
/// sequential studies give each trial the same data, initialisation and parameters.
fn trial_seed(study_seed: u64, number: u64) -> u64 {
    let mut z = study_seed ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    // TOML integers are i64: keep the seed within them so it can be written as an override.
    (z ^ (z >> 31)) & (i64::MAX as u64)
}

/// Every trial as TPE ranks it (sampler.rs): complete ones by value, pruned ones by how far
/// they got and their last reported value, failed and running ones (other workers', and
/// interrupted ones about to be re-run) as bad. Dropping pruned trials made a pruned study
/// propose from its start-up trials forever.
pub fn observations(trials: &[Trial], objective: spec::Objective) -> Vec<Observation> {
    trials
        .iter()
        .filter_map(|t| {
            let evidence = match t.state {
                TrialState::Complete => Evidence::Complete {
                    loss: objective.loss(t.value?),
                },
                TrialState::Pruned => Evidence::Pruned {
                    evals: t.intermediates.len(),
                    loss: t.intermediates.last().copied().unwrap_or(f64::INFINITY),
                },
                TrialState::Failed => Evidence::Failed,
                TrialState::Running | TrialState::Interrupted => Evidence::Running,
            };
            Some(Observation {
                params: t.params.clone(),
                evidence,
            })
        })
        .collect()
}

fn propose(study: &Study, trials: &[Trial]) -> Option<Proposal> {
    let sweep = &study.spec().sweep;
    let number = trials.iter().map(|t| t.number + 1).max().unwrap_or(0);
    let seed = trial_seed(sweep.seed, number);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (params, grid_index) = match sweep.sampler {
        SamplerKind::Random => (study.space.sample(&mut rng), None),
        SamplerKind::Tpe => {
            let history = observations(trials, sweep.objective);
            let tpe = sampler::Tpe {
                startup: sweep.startup_trials,
                multivariate: sweep.multivariate,
            };
            let params = sampler::tpe(&study.space, &history, tpe, &mut rng);
            (params, None)
        }
        SamplerKind::Grid => {
            let used: std::collections::HashSet<u64> =
                trials.iter().filter_map(|t| t.grid_index).collect();
            let grid = study.space.grid();
            let index = (0..grid.len() as u64).find(|i| !used.contains(i))?;
            (grid[index as usize].clone(), Some(index))
        }
    };
    Some(Proposal {
        params,
        seed,
        grid_index,
    })
}

fn run_trial(study: &Study, db: &dyn Storage, trial: &Trial) -> Result<()> {
    let started = Instant::now();
    let name = format!("{}-trial-{}", study.spec().experiment.name, trial.number);
    info!(trial = trial.number, params = ?trial.params, attempt = trial.attempts, "trial");
    let mut overrides = study.args.overrides.clone();
    overrides.extend(space::overrides(&trial.params));
    overrides.push(format!("experiment.seed={}", trial.seed));
    overrides.push(format!("experiment.name=\"{name}\""));
    let root = trial_dir(&study.dir, trial.number);
    let heartbeat = Heartbeat::start(
        study.location(),
        trial.attempt(),
        heartbeat_interval(study.spec().sweep.grace_period.get()),
    );
    let outcome = attempt(study, db, trial, &overrides, &root, started);
    heartbeat.stop();
    let (state, value, best_step, reason) = outcome;
    match state {
        TrialState::Failed => warn!(
            trial = trial.number,
            reason = reason.as_deref().unwrap_or(""),
            "trial failed"
        ),
        _ => info!(trial = trial.number, state = state.as_str(), value = ?value, "trial done"),
    }
    let spec = std::fs::read_to_string(RunPaths::new(root).resolved()).ok();
    let recorded = db.finish(
        trial.attempt(),
        &Outcome {
            state,
            value,
            best_step,
            reason: reason.as_deref(),
            wall_s: started.elapsed().as_secs_f64(),
            spec: spec.as_deref(),
        },
    )?;
    if !recorded {
        warn!(
            trial = trial.number,
            "another worker took this trial over (this one was silent for longer than \
             sweep.grace_period); its result stands and this one is not recorded"
        );
    }
    Ok(())
}

/// How often a running trial says it is alive: often enough that a few missed beats stay
/// well inside the grace period.
fn heartbeat_interval(grace_period: Duration) -> Duration {
    (grace_period / 4).min(Duration::from_secs(15))
}

/// An empty directory for a trial: a re-run clears what its earlier attempt left; a first
/// attempt never finds one (if it does, this study did not make it, and it is left alone).
fn fresh_trial_dir(trial: &Trial, root: &Path) -> Result<(), String> {
    if root.exists() && trial.attempts <= 1 {
        return Err(format!(
            "'{}' exists but this study never ran trial {}; it was left as it is",
            root.display(),
            trial.number
        ));
    }
    if root.exists() {
        std::fs::remove_dir_all(root)
            .map_err(|e| format!("cannot clear '{}': {e}", root.display()))?;
    }
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create '{}': {e}", root.display()))
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

type TrialResult = (TrialState, Option<f64>, Option<u64>, Option<String>);

/// Runs one trial; any failure of the trial itself (a spec the space made invalid, an
/// error, a panic inside burn, divergence) becomes a failed trial, never a failed study.
fn attempt(
    study: &Study,
    db: &dyn Storage,
    trial: &Trial,
    overrides: &[String],
    root: &Path,
    started: Instant,
) -> TrialResult {
    let failed = |reason: String| (TrialState::Failed, None, None, Some(reason));
    let resolved = match spec::load(&study.args.spec, overrides) {
        Ok(r) => r,
        Err(e) => return failed(format!("invalid spec: {e}")),
    };
    if let Err(reason) = fresh_trial_dir(trial, root) {
        return failed(reason);
    }
    let sweep = &study.spec().sweep;
    let mut observer = TrialObserver {
        db,
        attempt: trial.attempt(),
        pruner: Pruner::new(sweep),
        objective: sweep.objective,
        values: Vec::new(),
        target: resolved.spec.train.target_exact,
        reached_at: None,
    };
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute(&resolved, &study.device, root, started, &mut observer)
    }));
    let summary = match run {
        Ok(Ok(summary)) => summary,
        Ok(Err(e)) => return failed(format!("{e:#}")),
        Err(panic) => return failed(format!("panic: {}", panic_text(&*panic))),
    };
    let value = match sweep.objective {
        spec::Objective::ValExact => summary.best_val_exact,
        spec::Objective::ValLoss => summary.best_val_loss,
        spec::Objective::TimeToTarget => Some(time_to_target(
            observer.reached_at,
            summary.best_val_exact.unwrap_or(0.0),
            observer.target,
            resolved.spec.budget().as_secs_f64(),
        )),
    };
    use crate::train::Status;
    match summary.status {
        Status::Diverged => (TrialState::Failed, None, None, Some("diverged".into())),
        Status::Interrupted => (
            TrialState::Interrupted,
            value,
            summary.best_step,
            Some("interrupted".into()),
        ),
        Status::Pruned => (
            TrialState::Pruned,
            value,
            summary.best_step,
            Some("pruned".into()),
        ),
        _ => (TrialState::Complete, value, summary.best_step, None),
    }
}

/// The `time_to_target` value of a trial: the training seconds at which validation exact
/// match first reached `target`; else the budget plus the budget times the shortfall, so
/// that near misses rank before far ones and every miss after every success.
fn time_to_target(reached_at: Option<f64>, best: f64, target: f64, budget_s: f64) -> f64 {
    reached_at.unwrap_or(budget_s * (1.0 + (target - best).max(0.0)))
}

/// Reports each evaluation to storage and asks the pruner whether to go on.
struct TrialObserver<'a> {
    db: &'a dyn Storage,
    attempt: storage::Attempt,
    pruner: Pruner,
    objective: spec::Objective,
    values: Vec<f64>,
    /// `train.target_exact`, and when validation first reached it.
    target: f64,
    reached_at: Option<f64>,
}

impl Observer for TrialObserver<'_> {
    fn on_eval(&mut self, row: &MetricsRow) -> bool {
        if row.val_exact.is_some_and(|e| e >= self.target) && self.reached_at.is_none() {
            self.reached_at = Some(row.elapsed_s);
        }
        // Recorded for curves; a time-to-target study has no pruner (see validate).
        let loss = match self.objective {
            // A time is only known at the end: its curve records exact match meanwhile.
            spec::Objective::ValExact | spec::Objective::TimeToTarget => {
                // A language model has none: the study refuses these objectives for it.
                spec::Objective::ValExact.loss(row.val_exact.unwrap_or(0.0))
            }
            spec::Objective::ValLoss => row.val_loss,
        };
        self.values.push(loss);
        if let Err(e) = self.db.report(self.attempt, self.values.len() - 1, loss) {
            warn!(
                trial = self.attempt.number,
                "cannot record an intermediate value: {e:#}"
            );
            return true;
        }
        if !self.pruner.is_active() {
            return true;
        }
        let (Ok(trials), Ok(all)) = (self.db.trials(), self.db.intermediates()) else {
            return true;
        };
        let mut finished = all.clone();
        finished.retain(|n, _| {
            trials
                .iter()
                .any(|t| t.number == *n && t.state == TrialState::Complete)
        });
        let mut others = all;
        others.remove(&self.attempt.number);
        let prune = self.pruner.should_prune(&self.values, &finished, &others);
        if prune {
            info!(
                trial = self.attempt.number,
                eval = self.values.len(),
                "pruned"
            );
        }
        !prune
    }
}

/// Keeps a trial's heartbeat fresh from a thread with its own connection, so a long
/// evaluation gap never makes a live trial look dead.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(location: Location, attempt: storage::Attempt, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // A connection of its own: the worker's is busy with the trial.
            let Ok(db) = location.open() else { return };
            let mut last = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                if last.elapsed() >= every {
                    let _ = db.heartbeat(attempt);
                    last = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn spawn_workers(study: &Study, n: usize) -> Result<Vec<std::process::Child>> {
    let exe = std::env::current_exe().context("finding the runner executable")?;
    (1..=n)
        .map(|k| {
            let log_path = study.dir.join(format!("worker-{k}.log"));
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("creating '{}'", log_path.display()))?;
            std::process::Command::new(&exe)
                .arg("sweep")
                .arg(&study.args.spec)
                .args(&study.args.overrides)
                .arg("--worker")
                .args(
                    study
                        .args
                        .allow_space_change
                        .then_some("--allow-space-change"),
                )
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting worker {k}"))
        })
        .collect()
}

/// A progress bar over trials, with the best value so far, read from storage.
fn spawn_monitor(study: &Study, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let location = study.location();
    let total = study.total as u64;
    let objective = study.spec().sweep.objective;
    std::thread::spawn(move || {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("trials {pos}/{len} {bar:30} {msg} [{elapsed_precise}]")
                .expect("the template is valid"),
        );
        crate::logging::attach_bar(Some(bar.clone()));
        let Ok(db) = location.open_read_only() else {
            return;
        };
        while !done.load(Ordering::Relaxed) {
            if let Ok(trials) = db.trials() {
                let ended = trials
                    .iter()
                    .filter(|t| t.state != TrialState::Running)
                    .count();
                bar.set_position(ended as u64);
                if let Some(best) = report::best(&trials, objective) {
                    bar.set_message(format!(
                        "best {} {:.4} (trial {})",
                        objective.name(),
                        best.value.unwrap_or(f64::NAN),
                        best.number
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        bar.finish_and_clear();
        crate::logging::attach_bar(None);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Objective, ParamSpec, SweepSpec};

    fn one_param_space() -> Space {
        let mut sweep = SweepSpec::default();
        sweep.space.insert(
            "train.lr".into(),
            ParamSpec {
                float: Some([0.0, 1.0]),
                ..Default::default()
            },
        );
        Space::from_spec(&sweep, "t").unwrap()
    }

    fn trial(number: u64, x: f64, state: TrialState, intermediates: Vec<f64>) -> Trial {
        let mut params = space::Params::new();
        params.insert("train.lr".into(), toml::Value::Float(x));
        Trial {
            number,
            state,
            params,
            seed: number,
            value: None,
            best_step: None,
            reason: None,
            wall_s: None,
            grid_index: None,
            attempts: 1,
            intermediates,
            host: None,
            dir: None,
        }
    }

    /// Mean distance to the optimum (0.8) of 200 TPE proposals after `trials`.
    fn mean_distance_of_proposals(trials: &[Trial], multivariate: bool) -> f64 {
        let space = one_param_space();
        let tpe = sampler::Tpe {
            startup: 5,
            multivariate,
        };
        let history = observations(trials, Objective::ValExact);
        let total: f64 = (0..200u64)
            .map(|seed| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let p = sampler::tpe(&space, &history, tpe, &mut rng);
                (p["train.lr"].as_float().unwrap() - 0.8).abs()
            })
            .sum();
        total / 200.0
    }

    #[test]
    fn tpe_learns_from_a_study_whose_trials_were_all_pruned() {
        // Ten start-up trials, every one pruned: those nearer 0.8 got further before the
        // pruner stopped them. Uniform proposals average |x - 0.8| = 0.34.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let trials: Vec<Trial> = (0..10)
            .map(|n| {
                let x: f64 = rand::Rng::gen(&mut rng);
                let d = (x - 0.8).abs();
                let evals = 1 + (6.0 * (1.0 - d)) as usize;
                let losses = (0..evals).map(|_| -(1.0 - d)).collect();
                trial(n, x, TrialState::Pruned, losses)
            })
            .collect();
        for multivariate in [false, true] {
            let tpe = mean_distance_of_proposals(&trials, multivariate);
            eprintln!("TPE (multivariate {multivariate}) proposals average {tpe:.3} from the optimum (uniform: 0.34)");
            assert!(
                tpe < 0.2,
                "multivariate {multivariate}: proposals average {tpe:.3} from the optimum"
            );
        }
    }

    #[test]
    fn the_report_flags_proposals_that_collapsed_and_not_a_spread_study() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut draw = |lo: f64, hi: f64| lo + (hi - lo) * rand::Rng::gen::<f64>(&mut rng);
        let spread: Vec<Trial> = (0..16)
            .map(|n| trial(n, draw(0.0, 1.0), TrialState::Complete, vec![]))
            .collect();
        assert_eq!(report::collapse_warning(&spread), None);
        let mut stuck = spread[..6].to_vec();
        stuck.extend((6..16).map(|n| trial(n, draw(0.40, 0.45), TrialState::Pruned, vec![])));
        let warning = report::collapse_warning(&stuck).expect("flagged");
        assert!(warning.contains("last 8 trials (8..15)"), "{warning}");
        assert!(warning.contains("`train.lr`"), "{warning}");
    }

    #[test]
    fn failed_and_running_trials_are_never_good() {
        let trials = vec![
            trial(0, 0.1, TrialState::Failed, vec![]),
            trial(1, 0.2, TrialState::Running, vec![-0.9]),
            trial(2, 0.3, TrialState::Interrupted, vec![]),
            trial(3, 0.8, TrialState::Pruned, vec![-0.5, -0.6]),
        ];
        let history = observations(&trials, Objective::ValExact);
        assert_eq!(history.len(), 4);
        assert_eq!(history[0].evidence, Evidence::Failed);
        assert_eq!(history[1].evidence, Evidence::Running);
        assert_eq!(history[2].evidence, Evidence::Running);
        assert_eq!(
            history[3].evidence,
            Evidence::Pruned {
                evals: 2,
                loss: -0.6
            }
        );
    }

    #[test]
    fn time_to_target_ranks_every_success_before_every_miss() {
        let budget = 60.0;
        let fast = time_to_target(Some(12.0), 1.0, 0.99, budget);
        let slow = time_to_target(Some(59.0), 0.995, 0.99, budget);
        let near_miss = time_to_target(None, 0.985, 0.99, budget);
        let far_miss = time_to_target(None, 0.5, 0.99, budget);
        assert!(fast < slow && slow < near_miss && near_miss < far_miss);
        assert_eq!(fast, 12.0);
        assert!((near_miss - 60.3).abs() < 1e-9);
    }
}

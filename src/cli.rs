//! Command-line interface (clap derive). Parsing only; `app` does the work.

use crate::bench::BenchArgs;
use crate::compare::{plot::XAxis, Format};
use crate::quantize::Scheme;
use crate::score::ScoreArgs;
use crate::spec::{HumanDuration, StudyStorage};
use crate::sweep::SweepArgs;
use crate::train::checkpoint::Slot;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Train and evaluate bracket-closing language models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one model from a spec within its time budget.
    Run {
        /// Spec file, or a bare config name such as `gru_1min` (looked up in configs/).
        spec: String,
        /// Overrides as key.path=value, e.g. train.lr=3e-3 model.arch=lstm.
        overrides: Vec<String>,
    },
    /// Continue a run from its last checkpoint (after Ctrl-C, a crash, or to train longer).
    Resume {
        run_dir: PathBuf,
        /// Training time allowed now, e.g. 10min (default: what the run's budget has left).
        #[arg(long, value_parser = parse_budget)]
        budget: Option<HumanDuration>,
    },
    /// Only generate the dataset of a spec and save it.
    Data {
        spec: String,
        overrides: Vec<String>,
        /// Directory to write into (default: <out_dir>/<name>/data).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fold a LoRA run's adapters into plain weights: writes checkpoints/merged/, which
    /// eval and predict read with `--checkpoint merged`.
    Merge {
        run_dir: PathBuf,
        /// The checkpoint to merge.
        #[arg(long, value_enum, default_value_t = Slot::Best)]
        checkpoint: Slot,
    },
    /// Quantise a run's weight matrices (int8 or int4): writes checkpoints/int8/ (or int4/),
    /// which eval and predict read with `--checkpoint int8`, and compares it with the float
    /// model on fresh examples (file size, exact match, agreement, decoding speed).
    Quantize {
        run_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Scheme::Int8)]
        scheme: Scheme,
        /// The checkpoint to quantise.
        #[arg(long, value_enum, default_value_t = Slot::Best)]
        checkpoint: Slot,
        /// Fresh examples to compare the two models on.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Magnitude pruning (global, unstructured) at each sparsity: exact match straight
    /// after pruning and, with --finetune or --finetune-steps, after fine-tuning with the
    /// pruned weights held at zero (runs under RUN/prune/). Writes prune.csv, prune.md and
    /// prune.png into RUN/prune/.
    Prune {
        run_dir: PathBuf,
        /// Shares of the weight-matrix entries to set to zero, e.g. 0.5,0.7,0.9.
        #[arg(long, value_delimiter = ',', required = true)]
        sparsity: Vec<f64>,
        /// Fine-tune each pruned model for this long, e.g. 20s.
        #[arg(long, value_parser = parse_budget, conflicts_with = "finetune_steps")]
        finetune: Option<HumanDuration>,
        /// Fine-tune each pruned model for this many steps (reproducible on any machine).
        #[arg(long)]
        finetune_steps: Option<u64>,
        /// The checkpoint to prune.
        #[arg(long, value_enum, default_value_t = Slot::Best)]
        checkpoint: Slot,
        /// Fresh examples to score each model on.
        #[arg(long, default_value_t = 1000)]
        samples: usize,
    },
    /// Continue a prompt with a text run's model (data.source = "text"), printing tokens
    /// as they are made. Greedy unless --temperature is above 0.
    Generate(GenerateArgs),
    /// Write a run's weights for other tools: `hf` (a text run as a Hugging Face GPT-2
    /// directory) or `safetensors` (any run's weights and spec).
    Export {
        run_dir: PathBuf,
        #[arg(long, value_enum)]
        format: crate::text::export::Format,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Slot::Best)]
        checkpoint: Slot,
    },
    /// Look inside a bracket model on one prefix: attention heatmaps per layer and head,
    /// hidden states and gates, closer probabilities, a linear probe of the nesting depth,
    /// and which head attends to the matching opener. Writes RUN/explain/ (or --out).
    Explain {
        run_dir: PathBuf,
        prefix: String,
        #[arg(long, value_enum, default_value_t = Slot::Best)]
        checkpoint: Slot,
        /// Fresh examples for the head scores and the probe (half fit, half score it).
        #[arg(long, default_value_t = crate::explain::DEFAULT_SAMPLES)]
        samples: usize,
        /// Directory for the figures and summary (default RUN/explain).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A local dashboard of runs, compares and studies (read-only): http://127.0.0.1:8080.
    Serve(crate::serve::ServeArgs),
    /// Score a run's best checkpoint on fresh examples or a JSONL file.
    Eval(EvalArgs),
    /// Runs side by side: differing spec keys, results, and results at equal cost.
    Compare {
        /// Run directories, name directories (all runs), study directories (all trials),
        /// or metrics.csv files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Write learning curves to a .png or .svg file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Write exact match by answer length and by nesting depth (from each run's
        /// `eval --suite`, all its sets pooled), one line per run, to a .png or .svg file.
        #[arg(long)]
        suite_plot: Option<PathBuf>,
        /// The plot's x axis.
        #[arg(long, value_enum, default_value_t = XAxis::Seconds)]
        x: XAxis,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Show every spec key, not only those that differ.
        #[arg(long)]
        all_keys: bool,
    },
    /// Print the predicted closing sequence for a prefix.
    Predict {
        run_dir: PathBuf,
        prefix: String,
        #[arg(long, value_enum, default_value_t = Slot::Best)]
        checkpoint: Slot,
    },
    /// Run each config, then score its best checkpoint on fresh examples of its own
    /// distribution (as `runner eval --data` would) and write a results table.
    Score(ScoreArgs),
    /// Hyperparameter search over `[sweep.space]`; resumes the study if it exists.
    Sweep(SweepArgs),
    /// Inspect a study directory.
    Study {
        #[command(subcommand)]
        command: StudyCommand,
    },
    /// Training and decoding throughput of each architecture at its reference size.
    Bench(BenchArgs),
    /// List the configs in a directory with their one-line descriptions.
    Configs {
        #[arg(default_value = "configs")]
        dir: PathBuf,
    },
    /// List runs, newest first.
    Ls {
        /// Experiments directory.
        #[arg(default_value = "experiments")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Best trial, top trials, counts by state, failures.
    Show(StudyTarget),
    /// Print the best trial's spec as TOML (runnable with `runner run`).
    Best {
        #[command(flatten)]
        target: StudyTarget,
        /// Write it to DIR/best_trial.toml and print that path instead.
        #[arg(long)]
        path: bool,
    },
    /// Write report.md with figures: best trial, failures, importance, best-so-far curve.
    Report(StudyTarget),
    /// Copy a whole study between storages: a study directory (its study.db) and a
    /// PostgreSQL URL, either way. Running trials arrive as interrupted (they re-run).
    Copy {
        /// A study directory or a PostgreSQL URL.
        from: String,
        /// A study directory or a PostgreSQL URL.
        to: String,
        /// The study's name in PostgreSQL (default: the study directory's name).
        #[arg(long)]
        study: Option<String>,
    },
}

/// A study: its directory, and where its records live.
#[derive(Debug, Args)]
pub struct StudyTarget {
    /// The study directory, e.g. experiments/search_gru (its name is the study's name in
    /// PostgreSQL).
    pub dir: PathBuf,
    /// "sqlite" (study.db in the directory, the default) or the PostgreSQL URL the sweep
    /// used (sweep.storage); no password in it (use PGPASSWORD or ~/.pgpass).
    #[arg(long, env = "RUNNER_SWEEP__STORAGE", value_parser = StudyStorage::parse, default_value = "sqlite")]
    pub storage: StudyStorage,
}

/// `--budget 10min`: clap reports a bad value as a usage error (exit 2).
fn parse_budget(text: &str) -> Result<HumanDuration, String> {
    HumanDuration::parse(text)
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    pub run_dir: PathBuf,
    /// Text to continue (empty: start a new document).
    #[arg(long, default_value = "")]
    pub prompt: String,
    #[arg(long, default_value_t = 100)]
    pub max_new_tokens: usize,
    /// 0 = greedy; above 0 samples from the distribution sharpened (<1) or flattened (>1).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sample from the k most likely tokens only (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sample from the smallest set of tokens whose probabilities reach p (1 = all).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Seed of the sampler: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = Slot::Best)]
    pub checkpoint: Slot,
    /// Print one JSON object instead of streaming: the prompt's and the new token ids, the
    /// text, and the logits of the first new token (what scripts/check_hf_export.py reads).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    pub run_dir: PathBuf,
    /// JSONL file of {"input": ..., "output": ...} lines.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Number of fresh examples when no --data is given (default: the spec's eval.samples).
    #[arg(long)]
    pub samples: Option<usize>,
    /// Seed for fresh examples (default: derived from the run's seed, unlike its splits).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Skip invalid lines of --data (counted) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write eval.csv and report.txt into this directory.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Which checkpoint.
    #[arg(long, value_enum, default_value_t = Slot::Best)]
    pub checkpoint: Slot,
    /// The evaluation suite: in-distribution, longer and deeper sets (plus --data),
    /// by answer length and depth; writes eval_suite.csv and eval_suite.md.
    #[arg(long)]
    pub suite: bool,
}

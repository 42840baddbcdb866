//! `runner score`: runs configs (each with several seeds) and scores each run's best
//! checkpoint on fresh examples of its own distribution, as `runner eval --data` would;
//! writes a results table with the time each took to reach 99% validation exact match.

use crate::artifacts::{write_atomic, RunPaths};
use crate::data::dataset;
use crate::eval::{self, EvalReport};
use crate::run::prepare;
use crate::runs;
use crate::train::checkpoint::{self, Slot};
use anyhow::Result;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Spec files or bare config names.
    #[arg(required = true)]
    pub configs: Vec<String>,
    /// Fresh examples per config, drawn with a seed that did not draw the training data.
    #[arg(long, default_value_t = 1000)]
    pub fresh: usize,
    /// Markdown table to write (rewritten after each config).
    #[arg(long, default_value = "bench/score.md")]
    pub out: PathBuf,
    /// Overrides applied to every config (key.path=value).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Runs per config, with seeds experiment.seed, +1, +2, ...
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
}

/// `runner score`: run configs (each with `seeds` seeds) and score each run on fresh
/// examples, writing a table with the time each took to reach 99% validation exact match.
pub fn score(args: &ScoreArgs, run_spec: fn(&str, &[String]) -> Result<PathBuf>) -> Result<()> {
    let ScoreArgs {
        configs,
        fresh,
        out,
        overrides,
        seeds,
    } = args;
    let (fresh, seeds) = (*fresh, *seeds);
    // Check every config before spending time on the first.
    let mut base_seeds = Vec::new();
    for c in configs {
        let spec = prepare(c, overrides)?.0.spec;
        crate::limits::check_examples(&spec, fresh, "--fresh")?;
        base_seeds.push(spec.experiment.seed);
    }
    let mut table = String::from(
        "| config | seed | status | exact match (fresh) | best val exact | s to 99% val | wall s | train samples/s | params |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (c, base) in configs.iter().zip(base_seeds) {
        for k in 0..seeds.max(1) {
            let mut run_overrides = overrides.to_vec();
            run_overrides.push(format!("experiment.seed={}", base + k));
            let run_dir = run_spec(c, &run_overrides)?;
            let report = score_fresh(&run_dir, fresh)?;
            let summary = runs::read_summary(&run_dir)?;
            let to_99 = runs::read_metrics(&RunPaths::new(&run_dir).metrics())
                .unwrap_or_else(|(rows, _)| rows)
                .iter()
                .find(|r| r.val_exact.is_some_and(|e| e >= 0.99))
                .map(|r| format!("{:.1}", r.elapsed_s))
                .unwrap_or_else(|| "-".into());
            table.push_str(&format!(
                "| {} | {} | {} | {:.4} ({}/{}) | {} | {to_99} | {:.1} | {:.0} | {} |\n",
                summary.name,
                base + k,
                summary.status.as_str(),
                report.exact,
                report.correct,
                report.total,
                summary
                    .best_val_exact
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "-".into()),
                summary.wall_s,
                summary.samples_per_s,
                summary.params
            ));
            write_atomic(out, table.as_bytes())?;
        }
    }
    print!("{table}");
    Ok(())
}

/// Scores a run's best checkpoint on `n` fresh examples of its distribution and leaves them
/// as `fresh_<n>.jsonl` in the run directory, for `runner eval --data`.
fn score_fresh(run_dir: &Path, n: usize) -> Result<EvalReport> {
    let (loaded, device) = checkpoint::load_run(run_dir, Slot::Best)?;
    let spec = &loaded.spec;
    let vocab = dataset::vocab(spec);
    let examples = dataset::fresh(spec, &vocab, n, dataset::fresh_seed(spec));
    let data_file = RunPaths::new(run_dir).fresh_examples(n);
    dataset::write_jsonl(&data_file, &examples, &vocab)?;
    let max_new = crate::model::answer_budget(spec, spec.max_answer_len());
    let predictions = eval::predict(&loaded.model, &examples, &vocab, max_new, &device);
    let report = EvalReport::from_predictions(&predictions);
    println!(
        "{} -> {} (eval --data {})",
        run_dir.display(),
        report.headline(),
        data_file.display()
    );
    Ok(report)
}

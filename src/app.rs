//! One function per subcommand: load and check input, then do the work, then print.

use crate::artifacts::{create_run_dir, write_atomic, RunPaths};
use crate::cli::{Cli, Command, StudyCommand};
use crate::compare::{self, plot::XAxis, Format};
use crate::data::dataset;
use crate::data::Vocab;
use crate::error::UserError;
use crate::eval::{self, EvalReport};
use crate::run::{execute, prepare};
use crate::runs;
use crate::spec::{self, Spec};
use crate::sweep;
use crate::train;
use crate::train::checkpoint::{self, Slot};
use anyhow::Result;
use burn::prelude::Device;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { spec, overrides } => run_spec(&spec, &overrides).map(|_| ()),
        Command::Resume { run_dir, budget } => {
            let summary = crate::run::resume(&run_dir, budget)?;
            report_run(&run_dir, &summary)
        }
        Command::Data {
            spec,
            overrides,
            out,
        } => data(&spec, &overrides, out),
        Command::Eval {
            run_dir,
            data,
            samples,
            seed,
            skip_invalid,
            json,
            report,
            checkpoint,
            suite,
        } => evaluate(&EvalArgs {
            run_dir,
            data,
            samples,
            seed,
            skip_invalid,
            json,
            report,
            checkpoint,
            suite,
        }),
        Command::Compare {
            paths,
            plot,
            x,
            format,
            all_keys,
        } => compare(&paths, plot.as_deref(), x, format, all_keys),
        Command::Predict {
            run_dir,
            prefix,
            checkpoint,
        } => predict(&run_dir, &prefix, checkpoint),
        Command::Score {
            configs,
            fresh,
            out,
            overrides,
            seeds,
        } => score(&configs, fresh, &out, &overrides, seeds),
        Command::Sweep {
            spec,
            overrides,
            jobs,
            dry_run,
            allow_space_change,
            worker,
        } => sweep::sweep(sweep::SweepArgs {
            spec,
            overrides,
            jobs,
            dry_run,
            allow_space_change,
            worker,
        }),
        Command::Study { command } => match command {
            StudyCommand::Show { dir } => {
                print!("{}", sweep::show(&dir)?);
                Ok(())
            }
            StudyCommand::Report { dir } => {
                println!("{}", sweep::study_report(&dir)?.display());
                Ok(())
            }
            StudyCommand::Best { dir } => {
                let path = sweep::best_path(&dir);
                if !path.is_file() {
                    return Err(UserError::input(
                        dir.display().to_string(),
                        "has no best trial yet (no best_trial.toml)",
                    )
                    .into());
                }
                println!("{}", path.display());
                Ok(())
            }
        },
        Command::Bench(args) => crate::bench::bench(args),
        Command::Configs { dir } => {
            print!("{}", spec::describe_configs(&dir)?);
            Ok(())
        }
        Command::Ls { dir } => {
            print!("{}", runs::format_list(&runs::list(&dir)?));
            Ok(())
        }
    }
}

/// `runner run`: returns the run directory.
pub fn run_spec(arg: &str, overrides: &[String]) -> Result<PathBuf> {
    let started = Instant::now();
    let (resolved, device) = prepare(arg, overrides)?;
    let spec = &resolved.spec;
    let root = create_run_dir(Path::new(&spec.experiment.out_dir), &spec.experiment.name)?;
    let summary = execute(&resolved, &device, &root, started, &mut train::Unobserved)?;
    report_run(&root, &summary)?;
    Ok(root)
}

/// Prints where a run is and how it ended; an interrupted run becomes an `Interrupted`
/// error (exit 130) that says how to continue.
fn report_run(root: &Path, summary: &crate::runs::Summary) -> Result<()> {
    println!("run directory: {}", root.display());
    println!(
        "status: {} ({}), steps {}, {:.0} samples/s, wall {:.1}s",
        summary.status.as_str(),
        summary.stop_reason.as_str(),
        summary.steps,
        summary.samples_per_s,
        summary.wall_s
    );
    if let (Some(exact), Some(correct)) = (summary.test_exact, summary.test_correct) {
        println!("test_exact: {exact:.4} ({correct}/{})", summary.test_total);
    }
    if summary.status == train::Status::Interrupted {
        return Err(crate::signals::Interrupted(format!(
            "continue with: runner resume {}",
            root.display()
        ))
        .into());
    }
    Ok(())
}

/// `runner data`: generate and save the dataset only.
fn data(arg: &str, overrides: &[String], out: Option<PathBuf>) -> Result<()> {
    let (resolved, _) = prepare(arg, overrides)?;
    let spec = &resolved.spec;
    let dir = out.unwrap_or_else(|| {
        Path::new(&spec.experiment.out_dir)
            .join(&spec.experiment.name)
            .join("data")
    });
    let vocab = dataset::vocab(spec);
    let splits = dataset::build_splits(spec, &vocab)?;
    dataset::save(&dir, &splits, &vocab)?;
    write_atomic(&RunPaths::new(&dir).resolved(), spec.to_toml().as_bytes())?;
    println!(
        "wrote {} train, {} val, {} test examples to {}",
        splits.train.len(),
        splits.val.len(),
        splits.test.len(),
        dir.display()
    );
    Ok(())
}

struct EvalArgs {
    run_dir: PathBuf,
    data: Option<PathBuf>,
    samples: Option<usize>,
    seed: Option<u64>,
    skip_invalid: bool,
    json: bool,
    report: Option<PathBuf>,
    checkpoint: Slot,
    suite: bool,
}

/// Loads a run's checkpoint on the CPU backend.
fn load_run(run_dir: &Path, slot: Slot) -> Result<(checkpoint::Loaded, Device)> {
    let dir = checkpoint::find(&RunPaths::existing(run_dir)?.checkpoints(), slot)?;
    let device = Device::flex();
    let loaded = checkpoint::load(&dir, &device)?;
    Ok((loaded, device))
}

/// Seed for fresh evaluation examples: never the one that drew the run's splits.
fn fresh_seed(spec: &Spec) -> u64 {
    spec.experiment.seed.wrapping_add(0x9E37_79B9_7F4A_7C15)
}

fn evaluate(args: &EvalArgs) -> Result<()> {
    if args.suite {
        return evaluate_suite(args);
    }
    let (loaded, device) = load_run(&args.run_dir, args.checkpoint)?;
    let spec = &loaded.spec;
    let vocab = dataset::vocab(spec);
    let (examples, skipped) = match &args.data {
        Some(path) => {
            let l = dataset::load_jsonl(path, &vocab, args.skip_invalid)?;
            (l.examples, l.skipped)
        }
        None => {
            let n = args.samples.unwrap_or(spec.eval.samples);
            crate::limits::check_examples(spec, n, "--samples")?;
            let seed = args.seed.unwrap_or_else(|| fresh_seed(spec));
            (dataset::fresh(spec, &vocab, n, seed), Vec::new())
        }
    };
    for bad in &skipped {
        tracing::warn!("skipped {bad}");
    }
    let longest = examples
        .iter()
        .map(|e| e.answer.len() + 1)
        .max()
        .unwrap_or(0);
    let max_answer_len = crate::model::answer_budget(spec, longest.max(spec.max_answer_len()));
    check_positions(spec, &examples, max_answer_len, &vocab)?;
    let started = Instant::now();
    let predictions = eval::predict(&loaded.model, &examples, &vocab, max_answer_len, &device);
    let seconds = started.elapsed().as_secs_f64();
    let report = EvalReport::from_predictions(&predictions);
    if let Some(dir) = &args.report {
        eval::write_outputs(dir, &predictions, &report)?;
    }
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["skipped"] = skipped.len().into();
        value["checkpoint_step"] = loaded.state.step.into();
        value["seconds"] = seconds.into();
        println!("{}", serde_json::to_string(&value)?);
    } else {
        print!("{}", report.table());
        if !skipped.is_empty() {
            println!("skipped {} invalid lines", skipped.len());
        }
        println!("{}", report.headline());
    }
    Ok(())
}

fn predict(run_dir: &Path, prefix: &str, slot: Slot) -> Result<()> {
    let (loaded, device) = load_run(run_dir, slot)?;
    let vocab = dataset::vocab(&loaded.spec);
    let ids = vocab
        .encode(prefix)
        .map_err(|e| UserError::input(format!("prefix '{prefix}'"), e.to_string()))?;
    let example = crate::data::Example {
        prefix: ids,
        answer: Vec::new(),
    };
    let wanted = loaded.spec.max_answer_len().max(example.prefix.len() + 1);
    let max_new = crate::model::answer_budget(&loaded.spec, wanted);
    check_positions(
        &loaded.spec,
        std::slice::from_ref(&example),
        max_new,
        &vocab,
    )?;
    let decoded = loaded
        .model
        .generate(&[example.prompt(&vocab)], max_new, &vocab, &device);
    let written = vocab.decode(&decoded[0].tokens);
    println!("{written}");
    match crate::data::task::closing(&vocab, &example.prefix) {
        Ok(answer) if vocab.decode(&answer) != written || !decoded[0].ended => {
            eprintln!("note: the correct closing is '{}'", vocab.decode(&answer));
        }
        Ok(_) => {}
        Err(e) => eprintln!("note: '{prefix}' is not a valid open prefix ({e})"),
    }
    Ok(())
}

/// Attention models read at most their positional table: refuse longer inputs by name
/// instead of failing inside burn.
fn check_positions(
    spec: &Spec,
    examples: &[crate::data::Example],
    max_new: usize,
    vocab: &Vocab,
) -> Result<()> {
    let Some(limit) = crate::model::position_limit(spec) else {
        return Ok(());
    };
    if let Some(e) = examples
        .iter()
        .find(|e| !crate::model::fits(spec, e, max_new))
    {
        return Err(UserError::input(
            format!("prefix '{}'", vocab.decode(&e.prefix)),
            format!(
                "{} brackets are too many for this {} model: it reads at most {limit} \
                 positions (model.max_positions), i.e. prefixes of up to {} brackets with \
                 {max_new} answer tokens",
                e.prefix.len(),
                spec.model.arch.name(),
                limit.saturating_sub(2 + max_new)
            ),
        )
        .into());
    }
    Ok(())
}

/// `runner score`: run configs (each with `seeds` seeds) and score each run on fresh
/// examples, writing a table with the time each took to reach 99% validation exact match.
fn score(
    configs: &[String],
    fresh: usize,
    out: &Path,
    overrides: &[String],
    seeds: u64,
) -> Result<()> {
    // Check every config before spending time on the first.
    let mut base_seeds = Vec::new();
    for c in configs {
        base_seeds.push(prepare(c, overrides)?.0.spec.experiment.seed);
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
                .find(|r| r.val_exact >= 0.99)
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
    let (loaded, device) = load_run(run_dir, Slot::Best)?;
    let spec = &loaded.spec;
    let vocab = dataset::vocab(spec);
    let examples = dataset::fresh(spec, &vocab, n, fresh_seed(spec));
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

/// `runner eval RUN --suite`.
fn evaluate_suite(args: &EvalArgs) -> Result<()> {
    use crate::eval::suite;
    let (loaded, device) = load_run(&args.run_dir, args.checkpoint)?;
    let spec = &loaded.spec;
    let vocab = dataset::vocab(spec);
    let n = args.samples.unwrap_or(500);
    let seed = args.seed.unwrap_or_else(|| fresh_seed(spec));
    let mut sets = suite::generated_sets(spec, &vocab, n, seed);
    if let Some(path) = &args.data {
        let loaded_data = dataset::load_jsonl(path, &vocab, args.skip_invalid)?;
        sets.push(suite::EvalSet {
            name: path.display().to_string(),
            examples: loaded_data.examples,
        });
    }
    let results = suite::run(&loaded.model, spec, &vocab, sets, &device);
    let md = suite::write(&args.run_dir, &results, &vocab)?;
    print!("{md}");
    Ok(())
}

/// `runner compare`.
fn compare(
    paths: &[PathBuf],
    plot: Option<&Path>,
    x: XAxis,
    format: Format,
    all_keys: bool,
) -> Result<()> {
    // A plot that cannot be written is refused before anything is printed.
    if let Some(path) = plot {
        compare::plot::check_path(path)?;
    }
    let (runs, problems) = compare::collect(paths);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    if runs.is_empty() {
        return Err(UserError::input(
            "runner compare",
            "none of the paths holds a run with metrics",
        )
        .into());
    }
    match format {
        Format::Csv => print!("{}", compare::to_csv(&runs)?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&compare::rows(&runs))?),
        Format::Markdown => print!("{}", compare::render(&runs, all_keys, true)),
        Format::Table => print!("{}", compare::render(&runs, all_keys, false)),
    }
    if let Some(path) = plot {
        compare::plot::compare(&runs, path, x)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

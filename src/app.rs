//! One function per subcommand: load and check input, then do the work, then print.

use crate::artifacts::{create_run_dir, write_atomic, RunPaths};
use crate::cli::{Cli, Command, EvalArgs, StudyCommand};
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
        Command::Generate(a) => {
            let sampling = crate::text::generate::Sampling {
                temperature: a.temperature,
                top_k: a.top_k,
                top_p: a.top_p,
                seed: a.seed,
            };
            crate::text::generate::run(
                &a.run_dir,
                &a.prompt,
                a.max_new_tokens,
                sampling,
                a.checkpoint,
                a.json,
            )
        }
        Command::Export {
            run_dir,
            format,
            out,
            checkpoint,
        } => {
            for file in crate::text::export::export(&run_dir, format, &out, checkpoint)? {
                println!("{}", file.display());
            }
            Ok(())
        }
        Command::Explain {
            run_dir,
            prefix,
            checkpoint,
            samples,
            out,
        } => {
            let r = crate::explain::explain(&run_dir, &prefix, checkpoint, samples, out)?;
            println!("expected `{}`, predicted `{}`", r.expected, r.predicted);
            println!(
                "depth probe on {}: R² {:.4} ({} held-out positions)",
                r.probe.layer, r.probe.r_squared, r.probe.test_positions
            );
            if let Some(h) = &r.matching_head {
                println!(
                    "{} head {} attends to the matching opener at {:.1}% of closer steps",
                    h.layer,
                    h.head,
                    100.0 * h.hit_rate
                );
            }
            let dir = r
                .figures
                .first()
                .and_then(|f| f.parent())
                .map(Path::to_path_buf);
            if let Some(dir) = dir {
                println!(
                    "{} figures and summary.md in {}",
                    r.figures.len(),
                    dir.display()
                );
            }
            Ok(())
        }
        Command::Serve(args) => crate::serve::serve(args),
        Command::Eval(args) => evaluate(&args),
        Command::Compare {
            paths,
            plot,
            suite_plot,
            x,
            format,
            all_keys,
        } => compare(
            &paths,
            plot.as_deref(),
            suite_plot.as_deref(),
            x,
            format,
            all_keys,
        ),
        Command::Predict {
            run_dir,
            prefix,
            checkpoint,
        } => predict(&run_dir, &prefix, checkpoint),
        Command::Merge {
            run_dir,
            checkpoint,
        } => {
            let m = crate::merge::merge(&run_dir, checkpoint)?;
            println!(
                "merged: {} ({} parameters with adapters, {} merged)",
                m.dir.display(),
                m.params_before,
                m.params_after
            );
            Ok(())
        }
        Command::Quantize {
            run_dir,
            scheme,
            checkpoint,
            samples,
            json,
        } => {
            let report = crate::quantize::quantize(&run_dir, scheme, checkpoint, samples)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
        Command::Prune {
            run_dir,
            sparsity,
            finetune,
            finetune_steps,
            checkpoint,
            samples,
        } => {
            use crate::prune::Finetune;
            let finetune = match (finetune, finetune_steps) {
                (Some(b), _) => Finetune::Budget(b),
                (None, Some(n)) => Finetune::Steps(n),
                (None, None) => Finetune::None,
            };
            let table = crate::prune::prune_run(
                &run_dir, &sparsity, checkpoint, &finetune, samples, run_spec,
            )?;
            print!("{table}");
            Ok(())
        }
        Command::Score(args) => crate::score::score(&args, run_spec),
        Command::Sweep(args) => {
            print!("{}", sweep::sweep(args)?);
            Ok(())
        }
        Command::Study { command } => match command {
            StudyCommand::Show(t) => {
                print!("{}", sweep::show(&t.dir, &t.storage)?);
                Ok(())
            }
            StudyCommand::Report(t) => {
                println!("{}", sweep::study_report(&t.dir, &t.storage)?.display());
                Ok(())
            }
            StudyCommand::Best { target, path } => {
                let text = sweep::best_spec(&target.dir, &target.storage)?;
                if path {
                    let file = sweep::best_path(&target.dir);
                    crate::artifacts::write_atomic(&file, text.as_bytes())?;
                    println!("{}", file.display());
                } else {
                    print!("{text}");
                }
                Ok(())
            }
            StudyCommand::Copy { from, to, study } => {
                println!("{}", sweep::copy::copy(&from, &to, study.as_deref())?);
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
    match (summary.test_exact, summary.test_correct, summary.test_loss) {
        (Some(exact), Some(correct), _) => {
            println!("test_exact: {exact:.4} ({correct}/{})", summary.test_total)
        }
        // A language model: its test loss is what it has to show.
        (None, _, Some(loss)) => println!("test_loss: {loss:.4} ({} strings)", summary.test_total),
        _ => {}
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
    if spec.is_text() {
        // The tokenizer a run of this spec would train, and how the corpus tokenizes.
        let text = crate::text::prepare(spec, None)?;
        crate::text::save(&text, &dir, &dir)?;
        write_atomic(&RunPaths::new(&dir).resolved(), spec.to_toml().as_bytes())?;
        let s = &text.stats;
        println!(
            "wrote tokenizer.json ({} tokens) and text.json ({} train and {} val tokens, \
             {} and {} windows) to {}",
            s.vocab_size,
            s.train_tokens,
            s.val_tokens,
            s.train_windows,
            s.val_windows,
            dir.display()
        );
        return Ok(());
    }
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

fn evaluate(args: &EvalArgs) -> Result<()> {
    if args.suite {
        return evaluate_suite(args);
    }
    let (loaded, device) = checkpoint::load_run(&args.run_dir, args.checkpoint)?;
    crate::text::refuse(&args.run_dir, &loaded.spec, "runner eval")?;
    let zero_shot = loaded.spec.data.task == crate::spec::Task::Lm;
    if zero_shot && loaded.spec.model.arch == crate::spec::Arch::Ber {
        return Err(UserError::input(
            args.run_dir.display().to_string(),
            "is a masked language model (ber, data.task = \"lm\"): it fills hidden brackets \
             and cannot write a closing; finetune it on the closing task with model.init_from",
        )
        .into());
    }
    // A language model is scored on the closing task, zero-shot: fresh examples are drawn
    // from the same distribution with answers.
    let mut closing_spec = loaded.spec.clone();
    closing_spec.data.task = crate::spec::Task::Close;
    let spec = &closing_spec;
    let vocab = dataset::vocab(spec);
    let (examples, skipped) = match &args.data {
        Some(path) => {
            let l = dataset::load_jsonl(path, &vocab, args.skip_invalid)?;
            (l.examples, l.skipped)
        }
        None => {
            let n = args.samples.unwrap_or(spec.eval.samples);
            crate::limits::check_examples(spec, n, "--samples")?;
            let seed = args.seed.unwrap_or_else(|| dataset::fresh_seed(spec));
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
    let predictions = if zero_shot {
        eprintln!("note: a language model: scored zero-shot, continuing input + prefix");
        eval::predict_continuations(&loaded.model, &examples, &vocab, max_answer_len, &device)
    } else {
        eval::predict(&loaded.model, &examples, &vocab, max_answer_len, &device)
    };
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
        value["zero_shot"] = zero_shot.into();
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
    let (loaded, device) = checkpoint::load_run(run_dir, slot)?;
    crate::text::refuse(run_dir, &loaded.spec, "runner predict")?;
    let vocab = dataset::vocab(&loaded.spec);
    let ids = vocab
        .encode(prefix)
        .map_err(|e| UserError::input(format!("prefix '{prefix}'"), e.to_string()))?;
    if loaded.spec.data.task == crate::spec::Task::Lm {
        return continue_string(run_dir, &loaded, ids, &vocab, &device);
    }
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

/// `runner eval --suite` compares closings by length and depth; for a language model
/// (`data.task = "lm"`) plain `runner eval` scores its zero-shot closing instead.
fn refuse_language_model(run_dir: &Path, spec: &Spec) -> Result<()> {
    if spec.data.task != crate::spec::Task::Lm {
        return Ok(());
    }
    Err(UserError::input(
        run_dir.display().to_string(),
        "is a language model (data.task = \"lm\"): `runner eval RUN` (without --suite) \
         scores its zero-shot closing; finetune it on the closing task with model.init_from \
         for the suite",
    )
    .into())
}

/// `runner predict` on a language model: what it writes after `input` + the string, up to
/// its end token or the longest string of its data.
fn continue_string(
    run_dir: &Path,
    loaded: &checkpoint::Loaded,
    ids: Vec<u32>,
    vocab: &Vocab,
    device: &burn::prelude::Device,
) -> Result<()> {
    let spec = &loaded.spec;
    if spec.model.arch == crate::spec::Arch::Ber {
        return Err(UserError::input(
            run_dir.display().to_string(),
            "is a masked language model (ber, data.task = \"lm\"): it fills hidden brackets, \
             it does not continue a string; finetune it on the closing task with model.init_from",
        )
        .into());
    }
    let longest = spec.data.max_len + spec.data.max_depth + 1;
    let max_new = longest.saturating_sub(ids.len()).max(1);
    let mut prompt = vec![vocab.input()];
    prompt.extend(&ids);
    if let Some(limit) = crate::model::position_limit(spec) {
        if prompt.len() + max_new > limit {
            return Err(UserError::input(
                "prefix",
                format!("is too long for this model: it reads at most {limit} positions"),
            )
            .into());
        }
    }
    let decoded = loaded.model.generate(&[prompt], max_new, vocab, device);
    let end = if decoded[0].ended {
        vocab.decode(&[vocab.end()])
    } else {
        String::new()
    };
    println!("{}{}", vocab.decode(&decoded[0].tokens), end);
    Ok(())
}

/// Attention models read at most their positional table: refuse longer inputs by name
/// instead of failing inside burn.
pub(crate) fn check_positions(
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

/// `runner eval RUN --suite`.
fn evaluate_suite(args: &EvalArgs) -> Result<()> {
    use crate::eval::suite;
    let (loaded, device) = checkpoint::load_run(&args.run_dir, args.checkpoint)?;
    let spec = &loaded.spec;
    crate::text::refuse(&args.run_dir, spec, "runner eval --suite")?;
    refuse_language_model(&args.run_dir, spec)?;
    let vocab = dataset::vocab(spec);
    let n = args.samples.unwrap_or(500);
    crate::limits::check_examples(spec, n, "--samples")?;
    let seed = args.seed.unwrap_or_else(|| dataset::fresh_seed(spec));
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
    suite_plot: Option<&Path>,
    x: XAxis,
    format: Format,
    all_keys: bool,
) -> Result<()> {
    // A plot that cannot be written is refused before anything is printed.
    for path in plot.iter().chain(&suite_plot) {
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
    if let Some(path) = suite_plot {
        let (curves, missing) = compare::suite_curves(&runs);
        for label in &missing {
            eprintln!(
                "note: {label} has no eval_suite.csv (runner eval RUN --suite): not in the plot"
            );
        }
        if curves.is_empty() {
            return Err(UserError::input(
                "--suite-plot",
                "none of the runs has an eval_suite.csv: run `runner eval RUN --suite` first",
            )
            .into());
        }
        compare::plot::suite(&curves, path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = plot {
        compare::plot::compare(&runs, path, x)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

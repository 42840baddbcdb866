//! `runner bench`: training and decoding throughput of each architecture at its reference
//! size on the default task, measured as the median over several windows after a warm-up,
//! plus peak memory. Each architecture runs in a child process of its own, so that peak
//! memory is its own and one architecture's allocations do not slow the next.

use crate::data::batcher::{epoch_batches, make_batch, Batch};
use crate::data::dataset;
use crate::model::Model;
use crate::spec::{Arch, Spec};
use crate::train;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use clap::{Args, ValueEnum};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Architectures to measure (repeatable; default: all five).
    #[arg(long, value_enum)]
    pub arch: Vec<Arch>,
    #[arg(long, default_value = "cpu")]
    pub device: crate::spec::DeviceName,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Measurement windows (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub windows: usize,
    /// Training steps per window.
    #[arg(long, default_value_t = 30)]
    pub window_steps: usize,
    /// How training batches are formed (training uses `bucketed`).
    #[arg(long, value_enum, default_value_t = Batching::Bucketed)]
    pub batching: Batching,
    /// Pad every batch to this many positions (0: trim each batch to its longest record).
    #[arg(long, default_value_t = 0)]
    pub pad_to: usize,
    /// Changes to the reference sizes (key.path=value), e.g. model.activation=relu.
    #[arg(long = "set", value_name = "OVERRIDE")]
    pub overrides: Vec<String>,
    /// Directory for bench/<host>-<date>.csv.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// Internal: measure one architecture and print one JSON line.
    #[arg(long, hide = true)]
    pub child: bool,
}

/// Batch formation, for measuring what bucketing by length gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Batching {
    /// Records of similar length together (what training does).
    Bucketed,
    /// Records in random order.
    Shuffled,
}

impl Batching {
    pub fn name(self) -> &'static str {
        match self {
            Batching::Bucketed => "bucketed",
            Batching::Shuffled => "shuffled",
        }
    }
}

/// One architecture's figures; the columns of `bench/<host>-<date>.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    pub arch: String,
    pub device: String,
    pub threads: usize,
    pub batch_size: usize,
    /// `bucketed` or `shuffled`, with `+padN` when every batch was padded to N positions.
    pub batching: String,
    /// `--set` changes to the reference sizes, space-separated.
    pub overrides: String,
    pub params: usize,
    pub train_samples_per_s: f64,
    pub train_samples_per_s_min: f64,
    pub train_samples_per_s_max: f64,
    /// Non-padding input tokens per second.
    pub train_tokens_per_s: f64,
    pub eval_examples_per_s: f64,
    pub peak_rss_mib: Option<f64>,
}

/// The reference size of each architecture (the sizes the PyTorch figures are quoted at).
pub fn reference_spec(arch: Arch, batch_size: usize) -> Spec {
    let mut spec = Spec::default();
    spec.experiment.name = format!("bench_{}", arch.name());
    spec.model.arch = arch;
    spec.model.d_embed = 32;
    spec.model.d_hidden = 128;
    spec.model.n_layers = if arch.is_recurrent() { 1 } else { 2 };
    spec.model.d_model = 64;
    spec.model.n_heads = 4;
    spec.model.d_ff = 256;
    spec.model.n_enc_layers = 2;
    spec.model.n_dec_layers = 2;
    spec.train.batch_size = batch_size;
    spec
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let archs: Vec<Arch> = if args.arch.is_empty() {
        Arch::all().to_vec()
    } else {
        args.arch.clone()
    };
    crate::backend::device(args.device)?;
    // Every spec is checked before the first measurement starts.
    let specs = archs
        .iter()
        .map(|&arch| bench_spec(arch, &args))
        .collect::<Result<Vec<_>>>()?;
    if args.child {
        let row = measure(&specs[0], &args)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for arch in &archs {
        eprintln!("measuring {}...", arch.name());
        rows.push(run_child(arch.name(), &args)?);
    }
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let path = args.out.join(format!(
        "{host}-{}.csv",
        chrono::Local::now().format("%Y%m%d-%H%M%S")
    ));
    crate::artifacts::write_csv(&path, &rows)?;
    print!("{}", table(&rows));
    println!("wrote {}", path.display());
    Ok(())
}

fn run_child(arch: &str, args: &BenchArgs) -> Result<BenchRow> {
    let exe = std::env::current_exe().context("finding the runner executable")?;
    let out = std::process::Command::new(exe)
        .args([
            "bench",
            "--child",
            "--arch",
            arch,
            "--device",
            &args.device.to_string(),
        ])
        .args([
            "--batching",
            args.batching.name(),
            "--pad-to",
            &args.pad_to.to_string(),
        ])
        .args(["--batch-size", &args.batch_size.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--windows", &args.windows.to_string()])
        .args(args.overrides.iter().flat_map(|o| ["--set", o.as_str()]))
        .args(["--window-steps", &args.window_steps.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running the {arch} benchmark"))?;
    if !out.status.success() {
        bail!("the {arch} benchmark failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("reading the {arch} benchmark's result"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The reference spec with `--set` overrides, with positions for `--pad-to`.
fn bench_spec(arch: Arch, args: &BenchArgs) -> Result<Spec> {
    let mut reference = reference_spec(arch, args.batch_size);
    reference.experiment.threads = args.threads;
    let mut spec = crate::spec::with_overrides(reference, &args.overrides)?;
    // Padded batches need positions up to the padded width.
    spec.model.max_positions = spec.max_positions().max(args.pad_to);
    crate::limits::check_spec(&spec, "runner bench")?;
    Ok(spec)
}

fn measure(spec: &Spec, args: &BenchArgs) -> Result<BenchRow> {
    let arch = spec.model.arch;
    crate::backend::set_threads(args.threads);
    crate::backend::set_kernels(spec.experiment.kernels);
    let device = crate::backend::device(args.device)?;
    let train_device = device.clone().autodiff();
    train_device.seed(1);
    let vocab = dataset::vocab(spec);
    let pool = dataset::fresh(spec, &vocab, 8192, 1);
    let lengths: Vec<usize> = pool.iter().map(|e| e.prefix.len()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut batches = match args.batching {
        Batching::Bucketed => epoch_batches(&lengths, spec.train.batch_size, &mut rng),
        Batching::Shuffled => shuffled_batches(lengths.len(), spec.train.batch_size, &mut rng),
    }
    .into_iter()
    .cycle();
    let layout = crate::model::layout(spec, &vocab);
    let mut model = Model::init(spec, vocab.size(), &train_device);
    let params = model.num_params();
    let mut optim = train::optimiser(spec);
    let loss_fn = crate::model::loss_fn(&train_device);
    let mut noise = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let mut run_steps = |model: Model, n: usize| -> (Model, usize, usize) {
        let (mut model, mut samples, mut tokens) = (model, 0, 0);
        for _ in 0..n {
            let rows = batches.next().expect("cycle never ends");
            let refs: Vec<_> = rows.iter().map(|&i| &pool[i]).collect();
            tokens += refs
                .iter()
                .map(|e| e.prefix.len() + e.answer.len() + 2)
                .sum::<usize>();
            samples += refs.len();
            let batch = make_batch(&refs, &vocab, layout, &train_device, Some(&mut noise));
            let batch = pad_batch(batch, args.pad_to);
            model = train::step(model, &mut optim, &loss_fn, batch, 1e-3, None, None).0;
        }
        (model, samples, tokens)
    };
    model = run_steps(model, 10).0; // warm-up: allocations, caches
    let (mut sps, mut tps) = (Vec::new(), Vec::new());
    for _ in 0..args.windows.max(1) {
        let t0 = Instant::now();
        let (m, samples, tokens) = run_steps(model, args.window_steps.max(1));
        model = m;
        let dt = t0.elapsed().as_secs_f64();
        sps.push(samples as f64 / dt);
        tps.push(tokens as f64 / dt);
    }
    let valid = model.valid();
    let examples = dataset::fresh(spec, &vocab, 1000, 3);
    let mut eps = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        crate::eval::predict(&valid, &examples, &vocab, spec.max_answer_len(), &device);
        eps.push(examples.len() as f64 / t0.elapsed().as_secs_f64());
    }
    let (lo, hi) = sps
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(*x), b.max(*x)));
    Ok(BenchRow {
        arch: arch.name().into(),
        device: args.device.to_string(),
        threads: args.threads,
        batch_size: spec.train.batch_size,
        batching: describe_batching(args),
        overrides: args.overrides.join(" "),
        params,
        train_samples_per_s: median(&mut sps),
        train_samples_per_s_min: lo,
        train_samples_per_s_max: hi,
        train_tokens_per_s: median(&mut tps),
        eval_examples_per_s: median(&mut eps),
        peak_rss_mib: peak_rss_mib(),
    })
}

fn describe_batching(args: &BenchArgs) -> String {
    let name = args.batching.name();
    match args.pad_to {
        0 => name.into(),
        n => format!("{name}+pad{n}"),
    }
}

/// Batches of records in random order, for comparison with length buckets.
fn shuffled_batches(n: usize, batch_size: usize, rng: &mut impl rand::Rng) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// Pads every tensor of `batch` with PAD columns up to `width` positions (no-op when the
/// batch is already as wide, or `width` is 0): the fixed-length batches of the origin project.
fn pad_batch(mut batch: Batch, width: usize) -> Batch {
    let widen = |t: burn::tensor::Tensor<2, burn::tensor::Int>| {
        let [rows, len] = t.dims();
        if len >= width {
            return t;
        }
        let pad = burn::tensor::Tensor::zeros([rows, width - len], &t.device());
        burn::tensor::Tensor::cat(vec![t, pad], 1)
    };
    if width <= batch.len {
        batch.source = batch.source.map(widen);
        return batch;
    }
    let targets = batch.targets.reshape([batch.size, batch.len]);
    batch.targets = widen(targets).reshape([batch.size * width]);
    batch.tokens = widen(batch.tokens);
    batch.source = batch.source.map(widen);
    let mut answers = Vec::with_capacity(batch.size * width);
    for row in batch.answer_ids.chunks(batch.len) {
        answers.extend_from_slice(row);
        answers.resize(
            answers.len() + width - batch.len,
            crate::data::vocab::PAD as i64,
        );
    }
    batch.answer_ids = answers;
    batch.len = width;
    batch
}

/// Peak resident memory of this process (Linux: VmHWM), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn table(rows: &[BenchRow]) -> String {
    let mut out = format!(
        "{:<5} {:>8} {:>14} {:>16} {:>14} {:>14} {:>9}\n",
        "arch", "params", "train samp/s", "(min-max)", "train tok/s", "eval ex/s", "peak MiB"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<5} {:>8} {:>14.0} {:>16} {:>14.0} {:>14.0} {:>9}\n",
            r.arch,
            r.params,
            r.train_samples_per_s,
            format!(
                "{:.0}-{:.0}",
                r.train_samples_per_s_min, r.train_samples_per_s_max
            ),
            r.train_tokens_per_s,
            r.eval_examples_per_s,
            r.peak_rss_mib
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "-".into())
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Example;

    fn loss(model: &Model, batch: &Batch, device: &burn::prelude::Device) -> f32 {
        let [b, len, v] = model.forward(batch).dims();
        let logits = model.forward(batch).reshape([b * len, v]);
        crate::model::loss_fn(device)
            .forward(logits, batch.targets.clone())
            .into_scalar()
    }

    /// Padding adds positions that every model masks or never looks back from, so a padded
    /// benchmark measures more work for the same function.
    #[test]
    fn padding_a_batch_leaves_its_loss_unchanged() {
        let device = burn::prelude::Device::flex();
        for &arch in Arch::all() {
            let mut spec = reference_spec(arch, 4);
            spec.model.max_positions = 48;
            let vocab = dataset::vocab(&spec);
            let examples: Vec<Example> = dataset::fresh(&spec, &vocab, 4, 7);
            let refs: Vec<&Example> = examples.iter().collect();
            let layout = crate::model::layout(&spec, &vocab);
            let model = Model::init(&spec, vocab.size(), &device);
            let batch = make_batch(&refs, &vocab, layout, &device, None);
            let trimmed = loss(&model, &batch, &device);
            let padded = pad_batch(batch, 48);
            assert_eq!(padded.tokens.dims()[1], 48);
            let padded_loss = loss(&model, &padded, &device);
            assert!(
                (trimmed - padded_loss).abs() < 1e-5,
                "{arch:?}: {trimmed} trimmed vs {padded_loss} padded"
            );
        }
    }
}

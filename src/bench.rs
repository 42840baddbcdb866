//! `runner bench`: training and decoding throughput of each architecture at its reference
//! size on the default task, measured as the median over several windows after a warm-up,
//! plus peak memory. Each architecture runs in a child process of its own, so that peak
//! memory is its own and one architecture's allocations do not slow the next.

use crate::data::batcher::{epoch_batches, make_batch};
use crate::data::dataset;
use crate::model::Model;
use crate::spec::{Arch, Spec};
use crate::train;
use anyhow::{bail, Context, Result};
use burn::module::Module;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

pub struct BenchArgs {
    pub archs: Vec<String>,
    pub device: String,
    pub batch_size: usize,
    pub threads: usize,
    pub windows: usize,
    pub window_steps: usize,
    pub out: PathBuf,
    /// Internal: measure one architecture and print one JSON line.
    pub child: bool,
}

/// One architecture's figures; the columns of `bench/<host>-<date>.csv`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchRow {
    pub arch: String,
    pub device: String,
    pub threads: usize,
    pub batch_size: usize,
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

fn parse_arch(name: &str) -> Result<Arch> {
    Ok(match name {
        "gru" => Arch::Gru,
        "lstm" => Arch::Lstm,
        "tra" | "transformer" => Arch::Tra,
        "gpt" => Arch::Gpt,
        "ber" | "bert" => Arch::Ber,
        other => bail!("--arch {other}: unknown architecture; allowed: gru, lstm, tra, gpt, ber"),
    })
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let names: Vec<String> = if args.archs.is_empty() {
        ["gru", "lstm", "tra", "gpt", "ber"]
            .map(String::from)
            .to_vec()
    } else {
        args.archs.clone()
    };
    let archs: Vec<Arch> = names.iter().map(|n| parse_arch(n)).collect::<Result<_>>()?;
    crate::backend::device(&args.device)?;
    if args.child {
        let row = measure(archs[0], &args)?;
        println!("{}", serde_json::to_string(&row)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for (arch, name) in archs.iter().zip(&names) {
        eprintln!("measuring {}...", arch.name());
        rows.push(run_child(name, &args)?);
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
        .args(["bench", "--child", "--arch", arch, "--device", &args.device])
        .args([
            "--batch-size",
            &args.batch_size.to_string(),
            "--threads",
            &args.threads.to_string(),
        ])
        .args([
            "--windows",
            &args.windows.to_string(),
            "--window-steps",
            &args.window_steps.to_string(),
        ])
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

fn measure(arch: Arch, args: &BenchArgs) -> Result<BenchRow> {
    let spec = reference_spec(arch, args.batch_size);
    crate::backend::set_threads(args.threads);
    let device = crate::backend::device(&args.device)?;
    let train_device = device.clone().autodiff();
    train_device.seed(1);
    let vocab = dataset::vocab(&spec);
    let pool = dataset::fresh(&spec, &vocab, 8192, 1);
    let lengths: Vec<usize> = pool.iter().map(|e| e.prefix.len()).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut batches = epoch_batches(&lengths, spec.train.batch_size, &mut rng)
        .into_iter()
        .cycle();
    let layout = crate::model::layout(&spec, &vocab);
    let mut model = Model::init(&spec, vocab.size(), &train_device);
    let params = model.num_params();
    let mut optim = train::optimiser(&spec);
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
            model = train::step(model, &mut optim, &loss_fn, batch, 1e-3).0;
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
    let examples = dataset::fresh(&spec, &vocab, 1000, 3);
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
        device: args.device.clone(),
        threads: args.threads,
        batch_size: spec.train.batch_size,
        params,
        train_samples_per_s: median(&mut sps),
        train_samples_per_s_min: lo,
        train_samples_per_s_max: hi,
        train_tokens_per_s: median(&mut tps),
        eval_examples_per_s: median(&mut eps),
        peak_rss_mib: peak_rss_mib(),
    })
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

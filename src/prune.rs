//! Magnitude pruning, global and unstructured: the smallest weights of all weight matrices
//! together are set to zero. `train.sparsity` prunes a run's starting model (normally one
//! loaded with `model.init_from`) and keeps the pruned weights at zero while it trains, by
//! zeroing their gradients (AdamW then leaves a zero weight at zero); `runner prune RUN
//! --sparsity 0.5,0.7,0.9 [--finetune 20s]` measures exact match against sparsity.

use crate::artifacts::{write_atomic, RunPaths, Slot};
use crate::data::dataset;
use crate::error::UserError;
use crate::eval;
use crate::model::Model;
use crate::spec::HumanDuration;
use crate::train::checkpoint;
use anyhow::Result;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Every weight matrix's absolute values, to find the global threshold.
struct Magnitudes(Vec<f32>);

impl ModuleVisitor for Magnitudes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D >= 2 {
            let values = param
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default();
            self.0.extend(values.into_iter().map(f32::abs));
        }
    }
}

/// Sets every weight matrix entry with magnitude at or below `threshold` to zero.
struct Zero {
    threshold: f32,
}

impl ModuleMapper for Zero {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D < 2 {
            return param;
        }
        let threshold = self.threshold;
        param.map(|t| {
            // Rebuilt from its values: a fresh leaf, as a parameter must be in training.
            let trained = t.is_require_grad();
            let (device, dims) = (t.device(), t.dims());
            let mut values = t.into_data().try_to_vec::<f32>().unwrap_or_default();
            for v in values.iter_mut().filter(|v| v.abs() <= threshold) {
                *v = 0.0;
            }
            Tensor::<D>::from_data(TensorData::new(values, dims), &device).set_require_grad(trained)
        })
    }
}

/// The share of weight-matrix entries that are zero.
pub fn sparsity_of(model: &Model) -> f64 {
    let mut m = Magnitudes(Vec::new());
    model.visit(&mut m);
    m.0.iter().filter(|v| **v == 0.0).count() as f64 / m.0.len().max(1) as f64
}

/// Zeroes the `sparsity` share of weight-matrix entries with the smallest magnitudes,
/// across all matrices at once.
pub fn prune(model: Model, sparsity: f64) -> Model {
    let mut m = Magnitudes(Vec::new());
    model.visit(&mut m);
    let mut values = m.0;
    let k = ((sparsity * values.len() as f64) as usize).min(values.len());
    if k == 0 {
        return model;
    }
    let (_, kth, _) = values.select_nth_unstable_by(k - 1, f32::total_cmp);
    let threshold = *kth;
    model.map(&mut Zero { threshold })
}

/// Which weights stay at zero while a pruned model trains: the zero entries of its weight
/// matrices (after pruning, or as loaded by a resumed run, whose zeros are the same).
pub struct Masks {
    by_param: HashMap<ParamId, TensorData>,
}

struct Collect<'a>(&'a mut HashMap<ParamId, TensorData>);

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D == 2 {
            let keep = param.val().not_equal_elem(0.0).float().into_data();
            self.0.insert(param.id, keep);
        }
    }
}

impl Masks {
    pub fn of_zeros(model: &Model) -> Self {
        let mut by_param = HashMap::new();
        model.visit(&mut Collect(&mut by_param));
        Self { by_param }
    }

    /// Zeroes the gradients of the pruned weights.
    pub fn apply(&self, grads: &mut GradientsParams) {
        for (id, keep) in &self.by_param {
            if let Some(g) = grads.remove::<2>(*id) {
                let keep = Tensor::<2>::from_data(keep.clone(), &g.device());
                grads.register(*id, g * keep);
            }
        }
    }
}

/// One row of `runner prune`'s table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneRow {
    pub sparsity: f64,
    /// The share of zero weight-matrix entries actually reached.
    pub reached: f64,
    pub exact: f64,
    /// After fine-tuning with the pruned weights held at zero, when asked.
    pub exact_finetuned: Option<f64>,
    pub sparsity_finetuned: Option<f64>,
    pub finetune_run: Option<PathBuf>,
}

/// How long each fine-tune runs.
#[derive(Debug, Clone)]
pub enum Finetune {
    None,
    Budget(HumanDuration),
    Steps(u64),
}

/// Prunes the `from` checkpoint of `run_dir` to each sparsity, scores it on `samples`
/// fresh examples, optionally fine-tunes it (a run under `<run>/prune/`), and writes
/// `prune/prune.csv`, `prune/prune.md` and `prune/prune.png`. Returns the table.
pub fn prune_run(
    run_dir: &Path,
    sparsities: &[f64],
    from: Slot,
    finetune: &Finetune,
    samples: usize,
    run_spec: fn(&str, &[String]) -> Result<PathBuf>,
) -> Result<String> {
    if let Some(bad) = sparsities.iter().find(|s| !(0.0..1.0).contains(*s)) {
        return Err(UserError::new(
            "--sparsity",
            None,
            format!("{bad} is not a share of the weights: use values in [0, 1), e.g. 0.5,0.7,0.9"),
        )
        .into());
    }
    let (loaded, device) = checkpoint::load_run(run_dir, from)?;
    crate::text::refuse(run_dir, &loaded.spec, "runner prune")?;
    if loaded.spec.data.task == crate::spec::Task::Lm {
        return Err(UserError::input(
            run_dir.display().to_string(),
            "is a language model (data.task = \"lm\"): prune a model of the closing task, \
             whose exact match shows what pruning costs",
        )
        .into());
    }
    crate::limits::check_examples(&loaded.spec, samples, "--samples")?;
    let paths = RunPaths::existing(run_dir)?;
    let out = paths.root.join("prune");
    std::fs::create_dir_all(&out)?;
    let spec = &loaded.spec;
    let vocab = dataset::vocab(spec);
    let examples = dataset::fresh(spec, &vocab, samples, dataset::fresh_seed(spec));
    let exact = |model: &Model| {
        let p = eval::predict(model, &examples, &vocab, spec.max_answer_len(), &device);
        p.iter().filter(|x| x.correct).count() as f64 / p.len().max(1) as f64
    };
    let mut rows = Vec::new();
    for &sparsity in sparsities {
        let pruned = prune(loaded.model.clone(), sparsity);
        let mut row = PruneRow {
            sparsity,
            reached: sparsity_of(&pruned),
            exact: exact(&pruned),
            exact_finetuned: None,
            sparsity_finetuned: None,
            finetune_run: None,
        };
        if let Some(limit) = finetune_overrides(finetune) {
            let mut overrides = vec![
                format!(
                    "model.init_from={}",
                    toml::Value::String(run_dir.display().to_string())
                ),
                format!("train.sparsity={sparsity}"),
                format!(
                    "experiment.name=\"{}-sparsity-{}\"",
                    spec.experiment.name,
                    (sparsity * 100.0).round()
                ),
                format!(
                    "experiment.out_dir={}",
                    toml::Value::String(out.display().to_string())
                ),
            ];
            overrides.extend(limit);
            let finetuned = run_spec(&paths.resolved().display().to_string(), &overrides)?;
            let (tuned, _) = checkpoint::load_run(&finetuned, Slot::Best)?;
            row.exact_finetuned = Some(exact(&tuned.model));
            row.sparsity_finetuned = Some(sparsity_of(&tuned.model));
            row.finetune_run = Some(finetuned);
        }
        rows.push(row);
    }
    let dense = exact(&loaded.model);
    write_outputs(&out, &rows, dense)?;
    Ok(table(&rows, dense))
}

/// The overrides that bound a fine-tune, or None for no fine-tune.
fn finetune_overrides(finetune: &Finetune) -> Option<Vec<String>> {
    match finetune {
        Finetune::None => None,
        Finetune::Budget(b) => Some(vec![
            format!("train.budget=\"{b}\""),
            "train.max_steps=0".into(),
        ]),
        Finetune::Steps(n) => Some(vec![
            format!("train.max_steps={n}"),
            // A step-bounded run decays over its steps.
            "train.decay_over=".into(),
        ]),
    }
}

fn write_outputs(out: &Path, rows: &[PruneRow], dense: f64) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for row in rows {
        csv.serialize(row)?;
    }
    write_atomic(&out.join("prune.csv"), &csv.into_inner()?)?;
    write_atomic(&out.join("prune.md"), table(rows, dense).as_bytes())?;
    let points: Vec<(f64, f64)> = std::iter::once((0.0, dense))
        .chain(rows.iter().map(|r| (r.reached, r.exact)))
        .collect();
    let tuned: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.sparsity_finetuned?, r.exact_finetuned?)))
        .collect();
    crate::compare::plot::sparsity_curve(&points, &tuned, &out.join("prune.png"))
}

/// The table `runner prune` prints and writes as `prune.md`.
pub fn table(rows: &[PruneRow], dense: f64) -> String {
    let mut out =
        String::from("| sparsity | reached | exact | exact after fine-tune |\n|---|---|---|---|\n");
    let _ = writeln!(out, "| 0 (dense) | 0.000 | {dense:.4} | |");
    for r in rows {
        let tuned = r
            .exact_finetuned
            .map(|e| format!("{e:.4}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.4} | {tuned} |",
            r.sparsity, r.reached, r.exact
        );
    }
    out
}

//! `runner quantize RUN --scheme int8|int4`: post-training quantisation of a run's weight
//! matrices with burn's own quantisation (symmetric, min-max calibrated), written as the
//! run's checkpoint slot `int8` or `int4`, which `eval` and `predict` read with
//! `--checkpoint int8`. Vectors (biases, layer norms) stay in f32: they are a sliver of the
//! weights and the most sensitive to rounding. The report compares the quantised model with
//! the float one on the same fresh examples: file size, exact match, how often the two give
//! the same answer, and decoding speed.

use crate::artifacts::{write_json, RunPaths, Slot};
use crate::data::dataset;
use crate::error::UserError;
use crate::eval;
use crate::model::Model;
use crate::train::checkpoint;
use anyhow::Result;
use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::quantization::{
    compute_q_params, compute_range, Calibration, QuantScheme, QuantValue, ScaleDtype,
};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The quantisation schemes `runner quantize` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// 8-bit integers, one scale per matrix.
    Int8,
    /// 4-bit integers, one scale per block of 32 (or 16, 8) values along a matrix's rows.
    Int4,
}

impl Scheme {
    pub fn slot(self) -> Slot {
        match self {
            Scheme::Int8 => Slot::Int8,
            Scheme::Int4 => Slot::Int4,
        }
    }

    /// burn's scheme for a tensor whose last axis has `last` values.
    fn quant_scheme(self, rank: usize, last: usize) -> QuantScheme {
        match self {
            Scheme::Int8 => QuantScheme::default()
                .with_value(QuantValue::Q8S)
                .per_tensor(ScaleDtype::F32),
            Scheme::Int4 => {
                let scheme = QuantScheme::default().with_value(QuantValue::Q4S);
                // Blocks must tile the tensor; 4 bits with one scale per matrix lose too much.
                match [32u8, 16, 8]
                    .into_iter()
                    .find(|b| last.is_multiple_of(*b as usize))
                {
                    Some(b) => {
                        let mut block = vec![1u8; rank];
                        block[rank - 1] = b;
                        scheme.per_block(block, ScaleDtype::F32)
                    }
                    None => scheme.per_tensor(ScaleDtype::F32),
                }
            }
        }
    }
}

/// Quantises every parameter with two or more axes; counts what it did.
struct Matrices {
    scheme: Scheme,
    matrices: usize,
    values: usize,
}

impl ModuleMapper for Matrices {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if D < 2 {
            return param;
        }
        let scheme = self.scheme;
        self.matrices += 1;
        param.map(|tensor| {
            let dims = tensor.dims();
            self.values += dims.iter().product::<usize>();
            let q = scheme.quant_scheme(D, dims[D - 1]);
            let range = compute_range(&q, &tensor, &Calibration::MinMax);
            let qparams = compute_q_params(&q, range);
            tensor.quantize(&q, qparams)
        })
    }
}

/// Quantises `model`'s weight matrices; returns it with how many matrices and values.
pub fn quantize_model(model: Model, scheme: Scheme) -> (Model, usize, usize) {
    let mut mapper = Matrices {
        scheme,
        matrices: 0,
        values: 0,
    };
    let model = model.map(&mut mapper);
    (model, mapper.matrices, mapper.values)
}

/// What quantising did, written as `quantize.json` beside the quantised checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct QuantReport {
    pub scheme: Scheme,
    /// The checkpoint that was quantised.
    pub from: String,
    pub matrices: usize,
    pub values_quantized: usize,
    pub params_total: usize,
    pub file_bytes_float: u64,
    pub file_bytes_quantized: u64,
    pub samples: usize,
    pub exact_float: f64,
    pub exact_quantized: f64,
    /// The share of examples on which both models wrote the same answer.
    pub agreement: f64,
    pub decode_per_s_float: f64,
    pub decode_per_s_quantized: f64,
}

impl QuantReport {
    pub fn table(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        format!(
            "{:<10} {:>10} {:>8} {:>12}\n\
             {:<10} {:>9.3}M {:>8.4} {:>12.0}\n\
             {:<10} {:>9.3}M {:>8.4} {:>12.0}\n\
             agreement {:.4} on {} fresh examples; {} matrices ({} of {} values) quantised\n",
            "model",
            "file",
            "exact",
            "decodes/s",
            self.from,
            mib(self.file_bytes_float),
            self.exact_float,
            self.decode_per_s_float,
            format!("{:?}", self.scheme).to_lowercase(),
            mib(self.file_bytes_quantized),
            self.exact_quantized,
            self.decode_per_s_quantized,
            self.agreement,
            self.samples,
            self.matrices,
            self.values_quantized,
            self.params_total,
        )
    }
}

/// Quantises the `from` checkpoint of `run_dir` into its `int8`/`int4` slot and compares
/// the two models on `samples` fresh examples.
pub fn quantize(run_dir: &Path, scheme: Scheme, from: Slot, samples: usize) -> Result<QuantReport> {
    if matches!(from, Slot::Int8 | Slot::Int4) {
        return Err(UserError::new(
            "--checkpoint",
            None,
            "is already quantised; quantise best, last or merged",
        )
        .into());
    }
    let (loaded, device) = checkpoint::load_run(run_dir, from)?;
    crate::text::refuse(run_dir, &loaded.spec, "runner quantize")?;
    if loaded.spec.data.task == crate::spec::Task::Lm {
        return Err(UserError::input(
            run_dir.display().to_string(),
            "is a language model (data.task = \"lm\"): quantise a model trained or \
             finetuned on the closing task, whose exact match shows what was lost",
        )
        .into());
    }
    crate::limits::check_examples(&loaded.spec, samples, "--samples")?;
    let params_total = crate::model::params::counts(&loaded.model).total;
    let (quantized, matrices, values) = quantize_model(loaded.model.clone(), scheme);
    let checkpoints = RunPaths::existing(run_dir)?.checkpoints();
    checkpoint::save(
        &checkpoints,
        scheme.slot(),
        &quantized,
        None,
        &loaded.state,
        &loaded.spec,
    )?;
    // Scored as `eval --checkpoint int8` will see it: read back from disk.
    let (reloaded, _) = checkpoint::load_run(run_dir, scheme.slot())?;
    let spec = &loaded.spec;
    let vocab = dataset::vocab(spec);
    // The examples and answer budget `runner eval --samples N` uses, so the two agree.
    let examples = dataset::fresh(spec, &vocab, samples, dataset::fresh_seed(spec));
    let longest = examples
        .iter()
        .map(|e| e.answer.len() + 1)
        .max()
        .unwrap_or(0);
    let budget = crate::model::answer_budget(spec, longest.max(spec.max_answer_len()));
    let score = |model: &Model| {
        let started = Instant::now();
        let p = eval::predict(model, &examples, &vocab, budget, &device);
        (
            p,
            samples as f64 / started.elapsed().as_secs_f64().max(1e-9),
        )
    };
    let (float_p, float_speed) = score(&loaded.model);
    let (quant_p, quant_speed) = score(&reloaded.model);
    let exact =
        |p: &[eval::Prediction]| p.iter().filter(|x| x.correct).count() as f64 / p.len() as f64;
    let same = float_p
        .iter()
        .zip(&quant_p)
        .filter(|(a, b)| a.predicted == b.predicted)
        .count();
    let size = |slot: Slot| -> Result<u64> {
        let dir = checkpoint::find(&checkpoints, slot)?;
        Ok(std::fs::metadata(checkpoint::model_file(&dir))?.len())
    };
    let report = QuantReport {
        scheme,
        from: from.as_str().to_string(),
        matrices,
        values_quantized: values,
        params_total,
        file_bytes_float: size(from)?,
        file_bytes_quantized: size(scheme.slot())?,
        samples,
        exact_float: exact(&float_p),
        exact_quantized: exact(&quant_p),
        agreement: same as f64 / samples as f64,
        decode_per_s_float: float_speed,
        decode_per_s_quantized: quant_speed,
    };
    write_json(
        &checkpoint::find(&checkpoints, scheme.slot())?.join("quantize.json"),
        &report,
    )?;
    Ok(report)
}

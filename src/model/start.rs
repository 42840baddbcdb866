//! Where a run's model starts: a fresh initialisation, or another run's weights matched by
//! name and shape (`model.init_from`, with `model.reset` parts fresh), then LoRA adapters
//! (`model.lora`) and frozen parts (`train.freeze`).

use super::params::{self, ParamInfo};
use super::Model;
use crate::error::UserError;
use crate::spec::Spec;
use crate::train::checkpoint;
use burn::module::{Lora, Module};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What a run's model started from, parameter by parameter (in the run log and
/// `summary.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StartReport {
    /// The checkpoint `model.init_from` named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// Taken from that checkpoint.
    pub loaded: Vec<String>,
    /// Initialised fresh because `model.reset` named them.
    pub reset: Vec<String>,
    /// Initialised fresh because the checkpoint has no parameter of that name.
    pub fresh: Vec<String>,
    /// Left as they start (`train.freeze`).
    pub frozen: Vec<String>,
    /// Weights with LoRA adapters (`model.lora`).
    pub adapted: Vec<String>,
    /// All parameters (LoRA factors included) and those the optimiser updates.
    pub params: params::Counts,
}

/// The model a run trains, and how it started.
pub struct Start {
    pub model: Model,
    pub report: StartReport,
}

/// Builds the model a run starts training: `spec`'s architecture, the weights of
/// `model.init_from` where they fit, then adapters and frozen parts. The device's generator
/// is seeded first, so a fresh start is a function of `experiment.seed`.
pub fn start(spec: &Spec, vocab_size: usize, device: &Device) -> Result<Start, UserError> {
    device.seed(spec.experiment.seed);
    let mut model = Model::init(spec, vocab_size, device);
    let mut report = StartReport::default();
    if !spec.model.init_from.is_empty() {
        model = transfer(model, spec, device, &mut report)?;
    }
    let (model, adapted) = adapt(model, spec)?;
    report.adapted = adapted;
    let (model, frozen) = freeze(model, spec)?;
    report.frozen = frozen;
    let model = if spec.train.sparsity > 0.0 {
        crate::prune::prune(model, spec.train.sparsity)
    } else {
        model
    };
    // Reading the trainable flags initialises burn's lazy parameters here, right after the
    // seed: a fresh model's weights depend on `experiment.seed` alone (before 2026-11-25
    // they were drawn at the first training step, from that step's dropout seed).
    report.params = params::counts(&model);
    Ok(Start { model, report })
}

/// The model `spec` describes, shaped like its checkpoints (with LoRA adapters when the
/// spec has them), to load weights into.
pub fn structure(spec: &Spec, vocab_size: usize, device: &Device) -> Result<Model, UserError> {
    adapt(Model::init(spec, vocab_size, device), spec).map(|(model, _)| model)
}

/// Attaches LoRA adapters to the 2-D weights of `model.lora.targets`; burn freezes every
/// other parameter. Returns the adapted weights' names.
fn adapt(model: Model, spec: &Spec) -> Result<(Model, Vec<String>), UserError> {
    let Some(lora) = &spec.model.lora else {
        return Ok((model, Vec::new()));
    };
    let all = params::list(&model);
    let targets: Vec<&ParamInfo> = params::select(&all, &lora.targets, "model.lora.targets")?
        .into_iter()
        .filter(|p| p.shape.len() == 2)
        .collect();
    if targets.is_empty() {
        return Err(UserError::new(
            "",
            Some("model.lora.targets"),
            format!(
                "{:?} name no weight matrix (LoRA adapts 2-D weights only)",
                lora.targets
            ),
        ));
    }
    let names = targets.iter().map(|p| p.name.clone()).collect();
    let lora = Lora::new(lora.rank, lora.alpha).set_param_group(params::group(&targets));
    Ok((model.apply_lora(lora), names))
}

/// Stops gradients to the parts `train.freeze` names. Returns the frozen parameters' names.
pub fn freeze(model: Model, spec: &Spec) -> Result<(Model, Vec<String>), UserError> {
    if spec.train.freeze.is_empty() {
        return Ok((model, Vec::new()));
    }
    let all = params::list(&model);
    let chosen = params::select(&all, &spec.train.freeze, "train.freeze")?;
    let names = chosen.iter().map(|p| p.name.clone()).collect();
    let group = params::group(&chosen);
    Ok((model.freeze_group(group), names))
}

/// Copies into `target` every parameter of the `model.init_from` checkpoint with the same
/// name and shape, except those `model.reset` names; a parameter of the same name and
/// another shape is refused (by name) unless reset.
fn transfer(
    target: Model,
    spec: &Spec,
    device: &Device,
    report: &mut StartReport,
) -> Result<Model, UserError> {
    let from = spec.model.init_from.as_str();
    let fail = |m: String| UserError::new("", Some("model.init_from"), m);
    let dir = source_checkpoint(Path::new(from)).map_err(|e| fail(format!("'{from}': {e:#}")))?;
    let (source, theirs_spec) =
        load_source(&dir, spec, device).map_err(|e| fail(format!("'{from}' {e}")))?;
    let ours = params::list(&target);
    let theirs: HashMap<String, ParamInfo> = params::list(&source)
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let reset: Vec<&ParamInfo> = params::select(&ours, &spec.model.reset, "model.reset")?;
    let mut take = Vec::new();
    for p in &ours {
        if reset.iter().any(|r| r.name == p.name) {
            report.reset.push(p.name.clone());
            continue;
        }
        match theirs.get(&p.name) {
            Some(t) if t.shape == p.shape => {
                report.loaded.push(p.name.clone());
                take.push(t);
            }
            Some(t) => {
                return Err(fail(format!(
                    "'{from}': parameter `{}` is {:?} there and {:?} here ({}); use the same \
                     sizes, or list a part that holds it in model.reset to initialise it fresh",
                    p.name,
                    t.shape,
                    p.shape,
                    differing_sizes(&theirs_spec, spec)
                )))
            }
            None => report.fresh.push(p.name.clone()),
        }
    }
    if take.is_empty() {
        return Err(fail(format!(
            "'{from}': no parameter of its model has the name and shape of one of this model's"
        )));
    }
    report.init_from = Some(dir.display().to_string());
    let record = source.into_record_group(params::group(&take));
    target
        .try_load_record(record.allow_partial(true))
        .map_err(|e| fail(format!("'{from}': {e}")))
}

/// The best checkpoint of `from`: a run directory, or an experiment's directory (its newest
/// run with a best checkpoint, so that a config can name the run it builds on by name).
fn source_checkpoint(from: &Path) -> anyhow::Result<std::path::PathBuf> {
    let best = |run: &Path| {
        checkpoint::find(
            &crate::artifacts::RunPaths::new(run).checkpoints(),
            crate::artifacts::Slot::Best,
        )
    };
    if !from.exists() {
        anyhow::bail!(
            "does not exist: name a run directory, or an experiment directory with a finished \
             run (train that run first)"
        );
    }
    if crate::artifacts::RunPaths::new(from).is_run() || !from.is_dir() {
        return best(from);
    }
    let mut runs: Vec<std::path::PathBuf> = std::fs::read_dir(from)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| crate::artifacts::RunPaths::new(p).is_run())
        .collect();
    // Run ids are timestamps: the newest sorts last.
    runs.sort();
    runs.iter()
        .rev()
        .find_map(|run| best(run).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "neither a run directory nor an experiment directory with a finished run \
                 (no resolved.toml, and no run below it has a best checkpoint)"
            )
        })
}

/// The weights of a checkpoint as plain parameters (a LoRA run's adapters folded in), after
/// checking that they come from the same architecture and bracket pairs.
fn load_source(dir: &Path, spec: &Spec, device: &Device) -> Result<(Model, Spec), String> {
    let theirs = checkpoint::read_spec(dir).map_err(|e| e.to_string())?;
    if theirs.model.arch != spec.model.arch {
        return Err(format!(
            "holds a {} model; this spec builds a {} (model.arch): weights transfer within one \
             architecture",
            theirs.model.arch.name(),
            spec.model.arch.name()
        ));
    }
    if theirs.data.pairs != spec.data.pairs {
        return Err(format!(
            "was trained on pairs {:?}; this spec uses {:?} (data.pairs): the vocabularies differ",
            theirs.data.pairs, spec.data.pairs
        ));
    }
    let loaded = checkpoint::load(dir, device).map_err(|e| format!("{e:#}"))?;
    Ok((loaded.model.materialize(), theirs))
}

/// What differs between two specs that shapes parameters, for a message.
fn differing_sizes(theirs: &Spec, ours: &Spec) -> String {
    let keys = size_keys_differing(theirs, ours);
    if keys.is_empty() {
        "the vocabulary differs".into()
    } else {
        keys.join(", ")
    }
}

/// The model keys whose values differ between two specs, as `key: theirs -> ours`.
fn size_keys_differing(theirs: &Spec, ours: &Spec) -> Vec<String> {
    let table = |s: &Spec| toml::Value::try_from(&s.model).expect("a ModelSpec serialises");
    let (a, b) = (table(theirs), table(ours));
    let (Some(a), Some(b)) = (a.as_table(), b.as_table()) else {
        return Vec::new();
    };
    let mut differing: Vec<String> = ours
        .model
        .arch
        .size_keys()
        .iter()
        .filter(|k| a.get(**k) != b.get(**k))
        .map(|k| {
            let show = |t: &toml::Table| t.get(*k).map(|v| v.to_string()).unwrap_or_default();
            format!("model.{k} {} -> {}", show(a), show(b))
        })
        .collect();
    let learned = ours.model.pos_encoding == crate::spec::PosEncoding::Learned;
    if learned && !ours.model.arch.is_recurrent() && theirs.max_positions() != ours.max_positions()
    {
        differing.push(format!(
            "positions (model.max_positions) {} -> {}",
            theirs.max_positions(),
            ours.max_positions()
        ));
    }
    differing
}

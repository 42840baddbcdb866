//! Checkpoints: `checkpoints/best/` and `checkpoints/last/`, each holding the model, the
//! optimiser state, the training position and the resolved spec, so that the model can be
//! rebuilt from the directory alone.
//!
//! A checkpoint is written whole into `<slot>.new/`, then swapped in by two renames
//! (`<slot>` -> `<slot>.old`, `<slot>.new` -> `<slot>`). An interruption between them
//! leaves `<slot>.old` (or a complete `<slot>.new`), which [`find`] falls back to.

pub use crate::artifacts::Slot;
use crate::error::UserError;
use crate::model::Model;
use crate::spec::Spec;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MODEL_FILE: &str = "model.bpk";
pub const OPTIM_FILE: &str = "optim.bpk";
const STATE_FILE: &str = "state.json";
const SPEC_FILE: &str = "spec.toml";

/// Where training stood when the checkpoint was taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    pub step: u64,
    pub epoch: u64,
    pub samples: u64,
    pub elapsed_s: f64,
    /// None when the checkpoint was not taken at an evaluation (a diverged run's last state).
    pub val_exact: Option<f64>,
    /// Everything needed to continue the run exactly from here.
    pub position: super::Position,
}

/// Writes a checkpoint; `optim` is None only for one that is never trained on (`merged`).
pub fn save(
    checkpoints: &Path,
    slot: Slot,
    model: &Model,
    optim: Option<&ModuleOptimizer>,
    state: &TrainState,
    spec: &Spec,
) -> Result<()> {
    let [target, old, fresh] = candidates(slot).map(|name| checkpoints.join(name));
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh)
            .with_context(|| format!("clearing '{}'", fresh.display()))?;
    }
    std::fs::create_dir_all(&fresh).with_context(|| format!("creating '{}'", fresh.display()))?;
    model
        .clone()
        .save_file(fresh.join(MODEL_FILE))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("saving model to '{}'", fresh.display()))?;
    if let Some(optim) = optim {
        optim
            .save(fresh.join(OPTIM_FILE))
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("saving optimiser state to '{}'", fresh.display()))?;
    }
    crate::artifacts::write_atomic(&fresh.join(SPEC_FILE), spec.to_toml().as_bytes())?;
    // Written last: its presence marks the directory complete.
    crate::artifacts::write_json(&fresh.join(STATE_FILE), state)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("clearing '{}'", old.display()))?;
    }
    if target.exists() {
        std::fs::rename(&target, &old)
            .with_context(|| format!("moving '{}' aside", target.display()))?;
    }
    std::fs::rename(&fresh, &target)
        .with_context(|| format!("installing '{}'", target.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing '{}'", old.display()))?;
    }
    Ok(())
}

/// The model's file in a checkpoint directory.
pub fn model_file(dir: &Path) -> PathBuf {
    dir.join(MODEL_FILE)
}

/// `slot`, then what an interrupted swap may have left of it, in the order to try them.
fn candidates(slot: Slot) -> [String; 3] {
    let name = slot.as_str();
    [
        name.to_string(),
        format!("{name}.old"),
        format!("{name}.new"),
    ]
}

/// The complete checkpoint directory for `slot`, falling back to what an interrupted swap
/// left behind.
pub fn find(checkpoints: &Path, slot: Slot) -> Result<PathBuf> {
    for candidate in candidates(slot) {
        let dir = checkpoints.join(candidate);
        if dir.join(STATE_FILE).is_file() {
            return Ok(dir);
        }
    }
    let why = match slot {
        Slot::Merged => "`runner merge RUN` writes it, for a run with model.lora",
        Slot::Int8 | Slot::Int4 => "`runner quantize RUN --scheme int8|int4` writes it",
        Slot::Best | Slot::Last => "a run that ended before its first evaluation has none",
    };
    Err(UserError::input(
        checkpoints.display().to_string(),
        format!("no complete '{}' checkpoint ({why})", slot.as_str()),
    )
    .into())
}

/// A model rebuilt from a checkpoint directory, with its spec and position.
pub struct Loaded {
    pub model: Model,
    pub spec: Spec,
    pub state: TrainState,
    pub dir: PathBuf,
}

/// The `slot` checkpoint of a run directory, on the CPU backend (for eval, predict, score),
/// with the fused kernels on or off as the run had them.
pub fn load_run(run_dir: &Path, slot: Slot) -> Result<(Loaded, Device)> {
    let dir = find(
        &crate::artifacts::RunPaths::existing(run_dir)?.checkpoints(),
        slot,
    )?;
    let device = Device::flex();
    let loaded = load(&dir, &device)?;
    // Evaluate with the kernels the run trained with (`experiment.kernels`): the two agree
    // to rounding, and a run set to `composed` is one whose user wanted burn's operations.
    crate::backend::set_kernels(loaded.spec.experiment.kernels);
    Ok((loaded, device))
}

/// Loads a checkpoint with the model its own `spec.toml` describes.
pub fn load(dir: &Path, device: &Device) -> Result<Loaded> {
    let spec = read_spec(dir)?;
    load_into(dir, &spec, device).map(|mut l| {
        l.spec = spec;
        l
    })
}

/// The spec a checkpoint was saved with (enough to rebuild its model).
pub fn read_spec(dir: &Path) -> Result<Spec, UserError> {
    let path = dir.join(SPEC_FILE);
    toml::from_str(&read(&path)?).map_err(|e| damaged(&path, format!("is not a valid spec: {e}")))
}

/// Loads a checkpoint's weights into the model `spec` describes (they must fit).
pub fn load_into(dir: &Path, spec: &Spec, device: &Device) -> Result<Loaded> {
    let state_path = dir.join(STATE_FILE);
    let state: TrainState = serde_json::from_str(&read(&state_path)?)
        .map_err(|e| damaged(&state_path, format!("is corrupt: {e}")))?;
    let model_path = dir.join(MODEL_FILE);
    let model = crate::model::start::structure(spec, spec.n_tokens(), device)?
        .try_load_file(&model_path)
        .map_err(|e| {
            damaged(
                &model_path,
                format!("is missing, corrupt or from another model: {e}"),
            )
        })?;
    Ok(Loaded {
        model,
        spec: spec.clone(),
        state,
        dir: dir.to_path_buf(),
    })
}

fn read(path: &Path) -> Result<String, UserError> {
    std::fs::read_to_string(path).map_err(|e| damaged(path, format!("cannot be read: {e}")))
}

/// A checkpoint file the user's run directory holds but that cannot be used.
fn damaged(path: &Path, message: String) -> UserError {
    UserError::input(path.display().to_string(), message)
}

/// A checkpoint to continue training from: the model and the optimiser state.
pub struct Resumable {
    pub loaded: Loaded,
    pub optim: ModuleOptimizer,
}

/// The newest checkpoint whose model and optimiser state both load: `last` (or what an
/// interrupted swap left of it), else `best`. None when the run has no checkpoint at all
/// (it ended before its first evaluation); an error when every one is damaged.
pub fn load_resumable(
    checkpoints: &Path,
    spec: &Spec,
    device: &Device,
) -> Result<Option<Resumable>> {
    let mut problems = Vec::new();
    for slot in [Slot::Last, Slot::Best] {
        for candidate in candidates(slot) {
            let dir = checkpoints.join(&candidate);
            if !dir.is_dir() {
                continue;
            }
            let resumable = load_into(&dir, spec, device).and_then(|loaded| {
                let optim_path = dir.join(OPTIM_FILE);
                let optim = super::optimiser(spec)
                    .load(&optim_path)
                    .map_err(|e| damaged(&optim_path, format!("is missing or corrupt: {e}")))?;
                Ok(Resumable { loaded, optim })
            });
            match resumable {
                Ok(r) => return Ok(Some(r)),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
    }
    if problems.is_empty() {
        return Ok(None);
    }
    Err(UserError::input(
        checkpoints.display().to_string(),
        format!("no checkpoint can be resumed from: {}", problems.join("; ")),
    )
    .into())
}

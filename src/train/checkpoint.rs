//! Checkpoints: `checkpoints/best/` and `checkpoints/last/`, each holding the model, the
//! optimiser state, the training position and the resolved spec, so that the model can be
//! rebuilt from the directory alone.
//!
//! A checkpoint is written whole into `<which>.new/`, then swapped in by two renames
//! (`<which>` -> `<which>.old`, `<which>.new` -> `<which>`). An interruption between them
//! leaves `<which>.old` (or a complete `<which>.new`), which [`find`] falls back to.

use crate::model::Model;
use crate::spec::Spec;
use anyhow::{bail, Context, Result};
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
    pub val_exact: f64,
    /// Everything needed to continue the run exactly from here.
    pub position: super::Position,
}

pub fn save(
    checkpoints: &Path,
    which: &str,
    model: &Model,
    optim: &ModuleOptimizer,
    state: &TrainState,
    spec: &Spec,
) -> Result<()> {
    let target = checkpoints.join(which);
    let fresh = checkpoints.join(format!("{which}.new"));
    let old = checkpoints.join(format!("{which}.old"));
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
    optim
        .save(fresh.join(OPTIM_FILE))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("saving optimiser state to '{}'", fresh.display()))?;
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

/// `which`, then what an interrupted swap may have left of it, in the order to try them.
fn candidates(which: &str) -> [String; 3] {
    [
        which.to_string(),
        format!("{which}.old"),
        format!("{which}.new"),
    ]
}

/// The complete checkpoint directory for `which`, falling back to what an interrupted swap
/// left behind.
pub fn find(checkpoints: &Path, which: &str) -> Result<PathBuf> {
    for candidate in candidates(which) {
        let dir = checkpoints.join(candidate);
        if dir.join(STATE_FILE).is_file() {
            return Ok(dir);
        }
    }
    bail!(
        "no complete '{which}' checkpoint in '{}' (a run that ended before its first \
         evaluation has none)",
        checkpoints.display()
    )
}

/// A model rebuilt from a checkpoint directory, with its spec and position.
pub struct Loaded {
    pub model: Model,
    pub spec: Spec,
    pub state: TrainState,
    pub dir: PathBuf,
}

/// Loads a checkpoint with the model its own `spec.toml` describes.
pub fn load(dir: &Path, device: &Device) -> Result<Loaded> {
    let spec_path = dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("reading '{}'", spec_path.display()))?;
    let spec: Spec = toml::from_str(&text)
        .with_context(|| format!("'{}' is not a valid spec", spec_path.display()))?;
    load_into(dir, &spec, device).map(|mut l| {
        l.spec = spec;
        l
    })
}

/// Loads a checkpoint's weights into the model `spec` describes (they must fit).
pub fn load_into(dir: &Path, spec: &Spec, device: &Device) -> Result<Loaded> {
    let state_path = dir.join(STATE_FILE);
    let state: TrainState = serde_json::from_str(
        &std::fs::read_to_string(&state_path)
            .with_context(|| format!("reading '{}'", state_path.display()))?,
    )
    .with_context(|| format!("'{}' is corrupt", state_path.display()))?;
    let vocab = crate::data::dataset::vocab(spec);
    let model_path = dir.join(MODEL_FILE);
    let model = Model::init(spec, vocab.size(), device)
        .try_load_file(&model_path)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| {
            format!(
                "'{}' is missing, corrupt or from another model",
                model_path.display()
            )
        })?;
    Ok(Loaded {
        model,
        spec: spec.clone(),
        state,
        dir: dir.to_path_buf(),
    })
}

/// The newest checkpoint that loads: `last` (or what an interrupted swap left of it), else
/// `best`. Returns which one.
pub fn load_resumable(
    checkpoints: &Path,
    spec: &Spec,
    device: &Device,
) -> Result<(Loaded, String)> {
    let mut problems = Vec::new();
    for which in ["last", "best"] {
        for candidate in candidates(which) {
            let dir = checkpoints.join(&candidate);
            if !dir.is_dir() {
                continue;
            }
            let loaded = load_into(&dir, spec, device).and_then(|l| {
                if dir.join(OPTIM_FILE).is_file() {
                    Ok(l)
                } else {
                    bail!("'{}' is missing", dir.join(OPTIM_FILE).display())
                }
            });
            match loaded {
                Ok(l) => return Ok((l, candidate)),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
    }
    bail!(
        "no checkpoint in '{}' can be resumed from{}",
        checkpoints.display(),
        if problems.is_empty() {
            String::new()
        } else {
            format!(": {}", problems.join("; "))
        }
    )
}

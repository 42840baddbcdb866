//! `runner merge RUN`: a LoRA run's adapters folded into plain weights, written as the run's
//! `checkpoints/merged/` (a checkpoint with the spec of the same model without `model.lora`),
//! which `eval`, `predict` and `model.init_from` read like any other.

use crate::artifacts::{RunPaths, Slot};
use crate::error::UserError;
use crate::model::params;
use crate::train::checkpoint;
use anyhow::Result;
use burn::module::Module;
use std::path::{Path, PathBuf};

/// What merging wrote, for the user.
pub struct Merged {
    pub dir: PathBuf,
    /// Parameters before (base weights and adapter factors) and after.
    pub params_before: usize,
    pub params_after: usize,
}

/// Merges the `from` checkpoint (normally `best`) of a LoRA run into `checkpoints/merged/`.
pub fn merge(run_dir: &Path, from: Slot) -> Result<Merged> {
    if from == Slot::Merged {
        return Err(UserError::new(
            "--checkpoint",
            None,
            "merged is what merging writes; merge best or last",
        )
        .into());
    }
    let (loaded, _device) = checkpoint::load_run(run_dir, from)?;
    if loaded.spec.model.lora.is_none() {
        return Err(UserError::input(
            run_dir.display().to_string(),
            "has no LoRA adapters (model.lora): its checkpoints hold plain weights already",
        )
        .into());
    }
    let params_before = params::counts(&loaded.model).total;
    let model = loaded.model.valid().materialize();
    let params_after = params::counts(&model).total;
    let mut spec = loaded.spec;
    spec.model.lora = None;
    let checkpoints = RunPaths::existing(run_dir)?.checkpoints();
    checkpoint::save(
        &checkpoints,
        Slot::Merged,
        &model,
        None,
        &loaded.state,
        &spec,
    )?;
    Ok(Merged {
        dir: checkpoints.join(Slot::Merged.as_str()),
        params_before,
        params_after,
    })
}

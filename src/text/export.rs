//! `runner export`: a run's weights in formats other tools read. `hf` writes a text run as
//! a Hugging Face GPT-2 directory (`config.json`, `model.safetensors`, the tokenizer and
//! generation settings) that `transformers` loads with no code of ours; `safetensors`
//! writes any run's weights under their burn names, with its `spec.toml` beside them.

use super::TOKENIZER_FILE;
use crate::artifacts::{write_atomic, write_json};
use crate::error::UserError;
use crate::model::{Gpt2, Model};
use crate::spec::Spec;
use crate::train::checkpoint::{self, Slot};
use anyhow::{Context, Result};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Hugging Face GPT-2 directory (text runs).
    Hf,
    /// The weights as safetensors under burn's names, and the spec (any run).
    Safetensors,
}

pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Exports the `slot` checkpoint of `run_dir` into `out` (created if missing); returns the
/// files written.
pub fn export(run_dir: &Path, format: Format, out: &Path, slot: Slot) -> Result<Vec<PathBuf>> {
    let (loaded, _device) = checkpoint::load_run(run_dir, slot)?;
    if out.exists() && !out.is_dir() {
        return Err(UserError::input(
            "--out",
            format!(
                "'{}' is a file: give a directory (created if missing)",
                out.display()
            ),
        )
        .into());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating '{}'", out.display()))?;
    match (format, loaded.model) {
        (Format::Hf, Model::Gpt2(model)) => hf(run_dir, &loaded.spec, model, out),
        (Format::Hf, _) => Err(UserError::input(
            "--format",
            format!(
                "'{}' is a bracket run: hf exports text runs (data.source = \"text\") as \
                 GPT-2; use --format safetensors",
                run_dir.display()
            ),
        )
        .into()),
        (Format::Safetensors, model) => {
            let weights = out.join(WEIGHTS_FILE);
            let store = SafetensorsStore::from_bytes(None).skip_enum_variants(true);
            write_atomic(&weights, &save(&model, store)?)?;
            let spec = out.join("spec.toml");
            write_atomic(&spec, loaded.spec.to_toml().as_bytes())?;
            Ok(vec![weights, spec])
        }
    }
}

/// The module's tensors through `store`, as the bytes of a safetensors file that
/// PyTorch-side loaders accept (`format = "pt"`).
fn save<M: ModuleSnapshot>(module: &M, store: SafetensorsStore) -> Result<Vec<u8>> {
    let mut store = store.metadata("format", "pt");
    module
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("writing safetensors: {e}"))?;
    store
        .get_bytes()
        .map_err(|e| anyhow::anyhow!("writing safetensors: {e}"))
}

fn hf(run_dir: &Path, spec: &Spec, model: Gpt2, out: &Path) -> Result<Vec<PathBuf>> {
    let tokenizer = super::run_tokenizer(run_dir)?;
    let eot = tokenizer.eot();
    // GPT-2 always has query/key/value biases: a model trained without them exports zeros.
    let model = model.with_qkv_bias();
    let store = SafetensorsStore::from_bytes(None)
        .with_key_remapping(r"^", "transformer.")
        .with_key_remapping(r"\.gamma$", ".weight")
        .with_key_remapping(r"\.beta$", ".bias");
    let weights = out.join(WEIGHTS_FILE);
    write_atomic(&weights, &save(&model, store)?)?;
    let files = [
        ("config.json", config(spec, &model, eot)),
        ("generation_config.json", generation_config(eot)),
        (
            "tokenizer_config.json",
            tokenizer_config(model.n_positions()),
        ),
    ];
    let mut written = vec![weights];
    for (name, value) in files {
        let path = out.join(name);
        write_json(&path, &value)?;
        written.push(path);
    }
    let path = out.join(TOKENIZER_FILE);
    write_atomic(&path, tokenizer.to_json()?.as_bytes())?;
    written.push(path);
    Ok(written)
}

/// `GPT2Config` as `transformers` reads it. burn's GELU is the exact (erf) one, which is
/// `"gelu"` there (GPT-2's own `"gelu_new"` is the tanh approximation); burn's layer norm
/// epsilon is 1e-5, as GPT-2's.
pub fn config(spec: &Spec, model: &Gpt2, eot: u32) -> serde_json::Value {
    let m = &spec.model;
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": model.n_tokens(),
        "n_positions": model.n_positions(),
        "n_ctx": model.n_positions(),
        "n_embd": m.d_model,
        "n_layer": m.n_layers,
        "n_head": m.n_heads,
        "n_inner": m.d_ff,
        "activation_function": "gelu",
        "resid_pdrop": m.dropout,
        "embd_pdrop": m.dropout,
        "attn_pdrop": m.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
        "use_cache": true,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": 0,
        "torch_dtype": "float32",
    })
}

fn generation_config(eot: u32) -> serde_json::Value {
    json!({
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": 0,
        "do_sample": false,
    })
}

fn tokenizer_config(max_length: usize) -> serde_json::Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "bos_token": super::tokenizer::EOT,
        "eos_token": super::tokenizer::EOT,
        "pad_token": super::tokenizer::PAD,
        "add_bos_token": false,
        "clean_up_tokenization_spaces": false,
    })
}

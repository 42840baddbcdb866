//! What this machine can hold: refuses, before anything is written, a spec or a request
//! whose sizes cannot fit in memory or ask for more threads than there are cores, instead
//! of an allocation abort (exit 134) or an hour-long stall later. The estimates are rough
//! upper bounds for order-of-magnitude mistakes (`model.d_hidden=1e8`), not a tight budget.

use crate::error::UserError;
use crate::spec::Spec;

/// Bytes a line of an eval data file may hold: one prefix and its closing.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

const GIB: f64 = (1u64 << 30) as f64;

/// Physical memory, from /proc/meminfo; None where it cannot be read (then sizes are not
/// checked against it).
pub fn machine_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Threads, and the memory a run of `spec` needs (model, optimiser state, one batch's
/// activations, the dataset in memory).
pub fn check_spec(spec: &Spec, origin: &str) -> Result<(), UserError> {
    let cores = cores();
    if spec.experiment.threads > cores {
        return Err(UserError::new(
            origin,
            Some("experiment.threads"),
            format!(
                "{} threads, but this machine has {cores} cores; use at most {cores}",
                spec.experiment.threads
            ),
        ));
    }
    let Some(memory) = machine_memory() else {
        return Ok(());
    };
    let parts = [
        (
            "the model and its optimiser state",
            model_bytes(spec),
            model_key(spec),
        ),
        (
            "one batch's activations",
            activation_bytes(spec),
            "train.batch_size",
        ),
        ("the dataset", dataset_bytes(spec), "data.train_samples"),
    ];
    let total: f64 = parts.iter().map(|p| p.1).sum();
    if total <= 0.8 * memory {
        return Ok(());
    }
    let (what, largest, key) = parts
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("three parts");
    Err(UserError::new(
        origin,
        Some(key),
        format!(
            "this run would need about {:.1} GiB ({what} alone {:.1} GiB), but this machine \
             has {:.1} GiB of memory; use smaller sizes",
            total / GIB,
            largest / GIB,
            memory / GIB
        ),
    ))
}

/// `n` examples generated for evaluation, with their predictions.
pub fn check_examples(spec: &Spec, n: usize, origin: &str) -> Result<(), UserError> {
    let Some(memory) = machine_memory() else {
        return Ok(());
    };
    let bytes = 3.0 * n as f64 * example_bytes(spec);
    if bytes <= 0.5 * memory {
        return Ok(());
    }
    let most = (0.5 * memory / (3.0 * example_bytes(spec))) as u64;
    Err(UserError::input(
        origin,
        format!(
            "{n} examples would need about {:.1} GiB, but this machine has {:.1} GiB of memory; \
             ask for at most {most}",
            bytes / GIB,
            memory / GIB
        ),
    ))
}

/// The size key that drives the model's size, for the message.
fn model_key(spec: &Spec) -> &'static str {
    if spec.model.arch.is_recurrent() {
        "model.d_hidden"
    } else {
        "model.d_model"
    }
}

/// Parameters times four copies (weights, gradients, AdamW's two moments), f32.
fn model_bytes(spec: &Spec) -> f64 {
    let m = &spec.model;
    let vocab = spec.n_tokens() as f64;
    let params = if m.arch.is_recurrent() {
        let (e, h) = (m.d_embed as f64, m.d_hidden as f64);
        vocab * e + m.n_layers as f64 * 4.0 * (e.max(h) + h + 1.0) * h + h * vocab
    } else {
        let (d, ff) = (m.d_model as f64, m.d_ff as f64);
        let layers = (m.n_layers + m.n_enc_layers + m.n_dec_layers) as f64;
        let positions = spec.max_positions() as f64;
        (vocab + positions) * d + layers * (8.0 * d * d + 2.0 * d * ff) + d * vocab
    };
    16.0 * params
}

/// The widest intermediate tensors of one training step, kept for the backward pass.
fn activation_bytes(spec: &Spec) -> f64 {
    let m = &spec.model;
    let tokens = spec.train.batch_size as f64 * spec.positions_needed() as f64;
    let per_token = if m.arch.is_recurrent() {
        m.n_layers as f64 * 12.0 * m.d_hidden as f64
    } else {
        let layers = (m.n_layers + m.n_enc_layers + m.n_dec_layers) as f64;
        let attention = m.n_heads as f64 * spec.positions_needed() as f64;
        layers * (12.0 * m.d_model as f64 + 3.0 * m.d_ff as f64 + 3.0 * attention)
    };
    // Logits, their log-softmax and its gradient: what a text vocabulary makes large.
    let logits = 3.0 * spec.n_tokens() as f64;
    4.0 * tokens * (per_token + logits)
}

fn dataset_bytes(spec: &Spec) -> f64 {
    let d = &spec.data;
    if spec.is_text() {
        // The corpus's size is known once it is read; its windows take about as much.
        return 0.0;
    }
    // Splits in memory, the set of seen prefixes, and the saved forms built in memory.
    6.0 * (d.train_samples + d.val_samples + d.test_samples) as f64 * example_bytes(spec)
}

/// One example in memory: two vectors of u32 ids and their headers.
fn example_bytes(spec: &Spec) -> f64 {
    (48 + 4 * (spec.data.max_len + spec.max_answer_len())) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_sizes_fit_and_absurd_ones_do_not() {
        let spec = Spec::default();
        let total = model_bytes(&spec) + activation_bytes(&spec) + dataset_bytes(&spec);
        assert!(total < GIB, "{total}");
        let mut huge = Spec::default();
        huge.model.d_hidden = 100_000_000;
        assert!(model_bytes(&huge) > 1e15);
        let mut many = Spec::default();
        many.data.train_samples = 10_000_000_000;
        assert!(dataset_bytes(&many) > 1e12);
    }
}

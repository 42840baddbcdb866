//! Models behind one contract: `forward` gives logits aligned with a batch's targets,
//! `generate` writes an answer after each prompt. One file per architecture; adding one
//! means a new file, a variant here and a match arm in each method.

mod attention;
pub mod decode;
mod embed;

mod ber;
mod gpt;
pub mod gpt2;
mod gru;
pub mod loss;
mod lstm;
pub mod params;
mod recurrent;
pub mod stack;
pub mod start;
mod tra;
pub mod trace;

pub use ber::Ber;
pub use decode::Decoded;
pub use gpt::Gpt;
pub use gpt2::Gpt2;
pub use gru::Gru;
pub use lstm::Lstm;
pub use stack::Stack;
pub use tra::Tra;

use crate::data::batcher::{Batch, Layout};
use crate::data::Vocab;
use crate::spec::{Arch, LossOn, Spec, Task};
use burn::prelude::*;

// One model lives per run and is moved, not copied in bulk: variant sizes do not matter,
// and burn's Module derive does not see through a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model {
    Gru(Gru),
    Lstm(Lstm),
    Tra(Tra),
    Gpt(Gpt),
    Ber(Ber),
    Stack(Stack),
    /// The GPT-2-shaped decoder of text runs (`data.source = "text"`).
    Gpt2(Gpt2),
}

impl Model {
    pub fn init(spec: &Spec, vocab_size: usize, device: &Device) -> Self {
        let m = &spec.model;
        let positions = spec.max_positions();
        if spec.is_text() {
            let shape = gpt2::Gpt2Shape::of(m, vocab_size, positions);
            return Model::Gpt2(Gpt2::init(&shape, gpt2::INIT, device));
        }
        match m.arch {
            Arch::Gru => Model::Gru(Gru::init(m, vocab_size, device)),
            Arch::Lstm => Model::Lstm(Lstm::init(m, vocab_size, device)),
            Arch::Tra => Model::Tra(Tra::init(m, vocab_size, positions, device)),
            Arch::Gpt => Model::Gpt(Gpt::init(m, vocab_size, positions, device)),
            Arch::Ber => Model::Ber(Ber::init(m, vocab_size, positions, device)),
            Arch::Stack => Model::Stack(Stack::init(
                &stack::StackShape::of(spec, vocab_size),
                device,
            )),
        }
    }

    /// # Shapes
    /// batch tokens [batch, len] (and source) -> logits [batch, len, vocab]
    pub fn forward(&self, batch: &Batch) -> Tensor<3> {
        let tokens = batch.tokens.clone();
        match self {
            Model::Gru(m) => m.forward(tokens),
            Model::Lstm(m) => m.forward(tokens),
            Model::Gpt(m) => m.forward(tokens),
            Model::Ber(m) => m.forward(tokens),
            Model::Gpt2(m) => m.forward(tokens),
            Model::Stack(m) => m.forward(tokens),
            Model::Tra(m) => {
                let source = batch
                    .source
                    .clone()
                    .expect("encoder-decoder batches always carry a source");
                m.forward(source, tokens)
            }
        }
    }

    /// Greedy answers for each prompt (`input` + prefix + `,output`), at most `max_new`
    /// tokens including `end`.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        max_new: usize,
        vocab: &Vocab,
        device: &Device,
    ) -> Vec<Decoded> {
        let end = vocab.end();
        match self {
            Model::Gru(m) => decode::greedy(m, prompts, max_new, end, device),
            Model::Lstm(m) => decode::greedy(m, prompts, max_new, end, device),
            Model::Gpt(m) => decode::greedy(m, prompts, max_new, end, device),
            Model::Tra(m) => decode::greedy(m, prompts, max_new, end, device),
            Model::Ber(m) => m.fill(prompts, max_new, mask_id(vocab), end, device),
            Model::Gpt2(m) => decode::greedy(m, prompts, max_new, end, device),
            Model::Stack(m) => decode::greedy(m, prompts, max_new, end, device),
        }
    }
}

impl Model {
    /// Answers sampled at `temperature` after each prompt (REINFORCE); None for `ber`,
    /// which fills its answer slots at once rather than token by token.
    pub fn sample(
        &self,
        prompts: &[Vec<u32>],
        max_new: usize,
        vocab: &Vocab,
        temperature: f64,
        rng: &mut dyn rand::RngCore,
        device: &Device,
    ) -> Option<Vec<Decoded>> {
        let end = vocab.end();
        Some(match self {
            Model::Gru(m) => decode::sample(m, prompts, max_new, end, temperature, rng, device),
            Model::Lstm(m) => decode::sample(m, prompts, max_new, end, temperature, rng, device),
            Model::Gpt(m) => decode::sample(m, prompts, max_new, end, temperature, rng, device),
            Model::Tra(m) => decode::sample(m, prompts, max_new, end, temperature, rng, device),
            Model::Gpt2(m) => decode::sample(m, prompts, max_new, end, temperature, rng, device),
            Model::Stack(m) => decode::sample(m, prompts, max_new, end, temperature, rng, device),
            Model::Ber(_) => return None,
        })
    }
}

/// Cross-entropy over the targets of a batch, padding ignored: the validation loss, and
/// the training loss without label smoothing.
pub fn loss_fn(device: &Device) -> loss::Loss {
    loss::Loss::new(0.0, device)
}

/// The training loss: [`loss_fn`] with `train.label_smoothing`, when set.
pub fn training_loss_fn(spec: &Spec, device: &Device) -> loss::Loss {
    loss::Loss::new(spec.train.label_smoothing as f32, device)
}

/// The mask token of masked-LM models: the first id after the vocabulary.
pub fn mask_id(vocab: &Vocab) -> u32 {
    vocab.size() as u32
}

/// How the spec's architecture reads a record.
pub fn layout(spec: &Spec, vocab: &Vocab) -> Layout {
    if spec.is_text() {
        return Layout::Text;
    }
    if spec.data.task == Task::Lm {
        return match spec.model.arch {
            Arch::Ber => Layout::MaskedLm {
                mask_id: mask_id(vocab),
                mlm_prob: spec.model.mlm_prob,
            },
            // Refused by validation for tra; next-token for the others.
            _ => Layout::NextTokenLm,
        };
    }
    match spec.model.arch {
        Arch::Gru | Arch::Lstm | Arch::Gpt | Arch::Stack => Layout::NextToken {
            loss_on_all: spec.train.loss_on == LossOn::All,
        },
        Arch::Tra => Layout::EncoderDecoder,
        Arch::Ber => Layout::Masked {
            slots: spec.max_answer_len(),
            mask_id: mask_id(vocab),
            mlm_prob: spec.model.mlm_prob,
        },
    }
}

/// The longest sequence the model can read: the positional table of attention models with
/// one (`learned`, `sinusoidal`); recurrent models and the other schemes have none.
pub fn position_limit(spec: &Spec) -> Option<usize> {
    let table = !spec.model.arch.is_recurrent() && spec.model.pos_encoding.has_table();
    table.then(|| spec.max_positions())
}

/// Can the model read `example` with `max_new` answer tokens? Recurrent models always can.
pub fn fits(spec: &Spec, example: &crate::data::Example, max_new: usize) -> bool {
    position_limit(spec).is_none_or(|limit| example.prefix.len() + 2 + max_new <= limit)
}

/// How many tokens to decode after a prompt: `wanted`, except that a masked LM fills exactly
/// the slots it was trained with.
pub fn answer_budget(spec: &Spec, wanted: usize) -> usize {
    match spec.model.arch {
        Arch::Ber => spec.max_answer_len(),
        _ => wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batcher::make_batch;
    use crate::data::dataset;

    fn tiny(arch: Arch) -> Spec {
        let mut spec = Spec::default();
        spec.model.arch = arch;
        spec.model.d_embed = 8;
        spec.model.d_hidden = 8;
        spec.model.d_model = 8;
        spec.model.n_heads = 2;
        spec.model.d_ff = 16;
        spec.model.n_layers = 2;
        spec.model.n_enc_layers = 1;
        spec.model.n_dec_layers = 1;
        spec
    }

    #[test]
    fn every_architecture_gives_logits_aligned_with_its_targets() {
        let device = Device::flex();
        for &arch in Arch::all() {
            let spec = tiny(arch);
            let vocab = dataset::vocab(&spec);
            let examples = dataset::fresh(&spec, &vocab, 5, 1);
            let refs: Vec<&crate::data::Example> = examples.iter().collect();
            let batch = make_batch(&refs, &vocab, layout(&spec, &vocab), &device, None);
            let model = Model::init(&spec, vocab.size(), &device);
            let logits = model.forward(&batch);
            assert_eq!(
                logits.dims(),
                [5, batch.len, vocab.size()],
                "{}",
                arch.name()
            );
            let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt(&vocab)).collect();
            let decoded = model.generate(&prompts, spec.max_answer_len(), &vocab, &device);
            assert_eq!(decoded.len(), 5);
            assert!(decoded
                .iter()
                .all(|d| d.tokens.len() <= spec.max_answer_len()));
        }
    }
}

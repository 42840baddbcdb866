//! Models behind one contract: `forward` gives next-token logits for a batch of records,
//! `generate` writes an answer after each prompt. One file per architecture; adding one
//! means a new file, a variant here and a match arm in each method.

pub mod decode;
mod gru;
mod lstm;

pub use decode::Decoded;
pub use gru::GruLm;
pub use lstm::LstmLm;

use crate::spec::{Arch, ModelSpec};
use burn::prelude::*;

#[derive(Module, Debug)]
pub enum Model {
    Gru(GruLm),
    Lstm(LstmLm),
}

impl Model {
    pub fn init(spec: &ModelSpec, vocab_size: usize, device: &Device) -> Self {
        match spec.arch {
            Arch::Gru => Model::Gru(GruLm::init(spec, vocab_size, device)),
            Arch::Lstm => Model::Lstm(LstmLm::init(spec, vocab_size, device)),
        }
    }

    /// # Shapes
    /// tokens [batch, len] -> logits [batch, len, vocab]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        match self {
            Model::Gru(m) => m.forward(tokens),
            Model::Lstm(m) => m.forward(tokens),
        }
    }

    /// Greedy answers for each prompt, at most `max_new` tokens including `end`.
    pub fn generate(
        &self,
        prompts: &[Vec<u32>],
        max_new: usize,
        end: u32,
        device: &Device,
    ) -> Vec<Decoded> {
        match self {
            Model::Gru(m) => decode::greedy(m, prompts, max_new, end, device),
            Model::Lstm(m) => decode::greedy(m, prompts, max_new, end, device),
        }
    }
}

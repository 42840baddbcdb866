//! GRU language model: embedding, `n_layers` stacked GRUs with dropout between them, and a
//! linear head to the vocabulary.

use super::decode::Incremental;
use crate::spec::ModelSpec;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Gru as GruLayer, GruConfig, Linear,
    LinearConfig,
};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Gru {
    embed: Embedding,
    layers: Vec<GruLayer>,
    dropout: Dropout,
    head: Linear,
}

impl Gru {
    pub fn init(spec: &ModelSpec, vocab_size: usize, device: &Device) -> Self {
        let layers = (0..spec.n_layers)
            .map(|i| {
                let d_in = if i == 0 { spec.d_embed } else { spec.d_hidden };
                GruConfig::new(d_in, spec.d_hidden, true).init(device)
            })
            .collect();
        Self {
            embed: EmbeddingConfig::new(vocab_size, spec.d_embed).init(device),
            layers,
            dropout: DropoutConfig::new(spec.dropout).init(),
            head: LinearConfig::new(spec.d_hidden, vocab_size).init(device),
        }
    }

    /// # Shapes
    /// tokens [batch, len] -> logits [batch, len, vocab]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.run(tokens, None).0
    }

    /// Runs the stack from an optional per-layer state; returns logits and the last hidden
    /// state of each layer ([batch, d_hidden]).
    fn run(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<Vec<Tensor<2>>>,
    ) -> (Tensor<3>, Vec<Tensor<2>>) {
        let mut x = self.embed.forward(tokens); // [batch, len, d_embed]
        let mut state = state.map(Vec::into_iter);
        let mut last = Vec::with_capacity(self.layers.len());
        for (i, gru) in self.layers.iter().enumerate() {
            if i > 0 {
                x = self.dropout.forward(x);
            }
            let init = state.as_mut().and_then(Iterator::next);
            let (out, final_state) = super::recurrent::gru(gru, x, init);
            x = out; // [batch, len, d_hidden]
            last.push(final_state);
        }
        (self.head.forward(self.dropout.forward(x)), last)
    }
}

impl Incremental for Gru {
    type State = Vec<Tensor<2>>;

    fn prefill(&self, tokens: Tensor<2, Int>) -> (Tensor<2>, Self::State) {
        let (logits, state) = self.run(tokens, None);
        (super::decode::last_position(logits), state)
    }

    fn step(&self, tokens: Tensor<2, Int>, state: Self::State) -> (Tensor<2>, Self::State) {
        let (logits, state) = self.run(tokens, Some(state));
        (super::decode::last_position(logits), state)
    }
}

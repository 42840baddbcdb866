//! LSTM language model: embedding, `n_layers` stacked LSTMs with dropout between them, and a
//! linear head to the vocabulary.

use super::decode::Incremental;
use crate::spec::ModelSpec;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear, LinearConfig, Lstm as LstmLayer,
    LstmConfig, LstmState,
};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Lstm {
    embed: Embedding,
    layers: Vec<LstmLayer>,
    dropout: Dropout,
    head: Linear,
}

impl Lstm {
    pub fn init(spec: &ModelSpec, vocab_size: usize, device: &Device) -> Self {
        let layers = (0..spec.n_layers)
            .map(|i| {
                let d_in = if i == 0 { spec.d_embed } else { spec.d_hidden };
                LstmConfig::new(d_in, spec.d_hidden, true).init(device)
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

    fn run(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<Vec<LstmState<2>>>,
    ) -> (Tensor<3>, Vec<LstmState<2>>) {
        let mut x = self.embed.forward(tokens); // [batch, len, d_embed]
        let mut state = state.map(Vec::into_iter);
        let mut last = Vec::with_capacity(self.layers.len());
        for (i, lstm) in self.layers.iter().enumerate() {
            if i > 0 {
                x = self.dropout.forward(x);
            }
            let init = state.as_mut().and_then(Iterator::next);
            let (out, final_state) = super::recurrent::lstm(lstm, x, init); // [batch, len, d_hidden]
            x = out;
            last.push(final_state);
        }
        (self.head.forward(self.dropout.forward(x)), last)
    }
}

impl Incremental for Lstm {
    type State = Vec<LstmState<2>>;

    fn prefill(&self, tokens: Tensor<2, Int>) -> (Tensor<2>, Self::State) {
        let (logits, state) = self.run(tokens, None);
        (super::decode::last_position(logits), state)
    }

    fn step(&self, tokens: Tensor<2, Int>, state: Self::State) -> (Tensor<2>, Self::State) {
        let (logits, state) = self.run(tokens, Some(state));
        (super::decode::last_position(logits), state)
    }
}

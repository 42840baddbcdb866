//! GRU language model: [`RecurrentLm`] over burn's `Gru` layers, run by the faster forward
//! of recurrent.rs.

use super::recurrent::{Cell, RecurrentLm};
use burn::nn::Embedding;
use burn::nn::{Gru as GruLayer, GruConfig};
use burn::prelude::*;

pub type Gru = RecurrentLm<GruLayer>;

impl Cell for GruLayer {
    /// The hidden state [batch, d_hidden].
    type State = Tensor<2>;

    fn init(d_in: usize, d_hidden: usize, device: &Device) -> Self {
        GruConfig::new(d_in, d_hidden, true).init(device)
    }

    fn run(&self, x: Tensor<3>, state: Option<Tensor<2>>) -> (Tensor<3>, Tensor<2>) {
        super::recurrent::gru(self, x, state)
    }

    fn run_tokens(
        &self,
        embed: &Embedding,
        tokens: Tensor<2, Int>,
        state: Option<Tensor<2>>,
    ) -> (Tensor<3>, Tensor<2>) {
        super::recurrent::gru_tokens(self, embed, tokens, state)
    }

    /// z = σ(x Wz + h Uz): how much of the old state each unit keeps.
    fn gate(&self, x: Tensor<3>, h_before: Tensor<3>) -> Tensor<3> {
        let g = &self.update_gate;
        burn::tensor::activation::sigmoid(
            g.input_transform.forward(x) + g.hidden_transform.forward(h_before),
        )
    }

    const GATE: &'static str = "update gate z";
}

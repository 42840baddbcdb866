//! LSTM language model: [`RecurrentLm`] over burn's `Lstm` layers, run by the faster
//! forward of recurrent.rs.

use super::recurrent::{Cell, RecurrentLm};
use burn::nn::Embedding;
use burn::nn::{Lstm as LstmLayer, LstmConfig, LstmState};
use burn::prelude::*;

pub type Lstm = RecurrentLm<LstmLayer>;

impl Cell for LstmLayer {
    /// Cell and hidden state, each [batch, d_hidden].
    type State = LstmState<2>;

    fn init(d_in: usize, d_hidden: usize, device: &Device) -> Self {
        LstmConfig::new(d_in, d_hidden, true).init(device)
    }

    fn run(&self, x: Tensor<3>, state: Option<LstmState<2>>) -> (Tensor<3>, LstmState<2>) {
        super::recurrent::lstm(self, x, state)
    }

    fn run_tokens(
        &self,
        embed: &Embedding,
        tokens: Tensor<2, Int>,
        state: Option<LstmState<2>>,
    ) -> (Tensor<3>, LstmState<2>) {
        super::recurrent::lstm_tokens(self, embed, tokens, state)
    }

    /// f = σ(x Wf + h Uf): how much of the cell each unit keeps.
    fn gate(&self, x: Tensor<3>, h_before: Tensor<3>) -> Tensor<3> {
        let g = self
            .forget_gate
            .as_ref()
            .expect("runner's LSTM layers are built with a forget gate");
        burn::tensor::activation::sigmoid(
            g.input_transform.forward(x) + g.hidden_transform.forward(h_before),
        )
    }

    const GATE: &'static str = "forget gate f";
}

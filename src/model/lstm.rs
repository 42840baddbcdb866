//! LSTM language model: [`RecurrentLm`] over burn's `Lstm` layers, run by the faster
//! forward of recurrent.rs.

use super::recurrent::{Cell, RecurrentLm};
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
}

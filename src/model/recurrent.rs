//! Faster forward passes over burn's own `Gru` and `Lstm` modules (same parameters, same
//! checkpoints, same function). Profiling a training step on the CPU backend showed most of
//! the time outside the matrix products in `tanh` (a scalar libm call per element), and many
//! small per-timestep operations. Here the input projections of all timesteps are one matrix
//! product per gate, `tanh` is computed through the backend's faster `sigmoid`
//! (tanh x = 2σ(2x) − 1), and the outputs are stacked once instead of written into a
//! sequence tensor one timestep at a time. Measured with `runner bench` (docs/benchmarks.md).

use super::decode::Incremental;
use crate::spec::ModelSpec;
use burn::module::ModuleDisplay;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Gru, Linear, LinearConfig, Lstm, LstmState,
};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

/// One of burn's recurrent layers as a layer of [`RecurrentLm`]: what differs between the
/// GRU and the LSTM language models (gru.rs, lstm.rs).
pub trait Cell: Module + ModuleDisplay {
    /// What the layer carries from one timestep to the next.
    type State: Clone + Send;
    fn init(d_in: usize, d_hidden: usize, device: &Device) -> Self;
    /// x [batch, len, d_in] -> outputs [batch, len, d_hidden] and the final state.
    fn run(&self, x: Tensor<3>, state: Option<Self::State>) -> (Tensor<3>, Self::State);
    /// The gate `runner explain` shows (GRU: update, LSTM: forget), from the layer's input
    /// x [batch, len, d_in] and the hidden state before each step [batch, len, d_hidden].
    fn gate(&self, x: Tensor<3>, h_before: Tensor<3>) -> Tensor<3>;
    /// The gate's name, for figures.
    const GATE: &'static str;
}

/// A recurrent language model: embedding, `n_layers` stacked cells with dropout between
/// them, and a linear head to the vocabulary.
#[derive(Module, Debug)]
pub struct RecurrentLm<C: Cell> {
    pub(super) embed: Embedding,
    pub(super) layers: Vec<C>,
    dropout: Dropout,
    pub(super) head: Linear,
}

impl<C: Cell> RecurrentLm<C> {
    pub fn init(spec: &ModelSpec, vocab_size: usize, device: &Device) -> Self {
        let layers = (0..spec.n_layers)
            .map(|i| {
                let d_in = if i == 0 { spec.d_embed } else { spec.d_hidden };
                C::init(d_in, spec.d_hidden, device)
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

    /// Runs the stack from an optional per-layer state; returns logits and the final state
    /// of each layer.
    fn run(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<Vec<C::State>>,
    ) -> (Tensor<3>, Vec<C::State>) {
        let mut x = self.embed.forward(tokens); // [batch, len, d_embed]
        let mut state = state.map(Vec::into_iter);
        let mut last = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                x = self.dropout.forward(x);
            }
            let init = state.as_mut().and_then(Iterator::next);
            let (out, final_state) = layer.run(x, init);
            x = out; // [batch, len, d_hidden]
            last.push(final_state);
        }
        (self.head.forward(self.dropout.forward(x)), last)
    }
}

impl<C: Cell> Incremental for RecurrentLm<C> {
    type State = Vec<C::State>;

    fn prefill(&self, tokens: Tensor<2, Int>) -> (Tensor<2>, Self::State) {
        let (logits, state) = self.run(tokens, None);
        (super::decode::last_position(logits), state)
    }

    fn step(&self, tokens: Tensor<2, Int>, state: Self::State) -> (Tensor<2>, Self::State) {
        let (logits, state) = self.run(tokens, Some(state));
        (super::decode::last_position(logits), state)
    }
}

/// tanh through sigmoid: mathematically the same function, several times cheaper on the
/// CPU backend.
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    sigmoid(x.mul_scalar(2.0)).mul_scalar(2.0).sub_scalar(1.0)
}

/// Timestep `t` of a [batch, len, d] tensor, as [batch, d].
pub(super) fn at(x: &Tensor<3>, t: usize) -> Tensor<2> {
    let [batch, _, d] = x.dims();
    x.clone().slice([0..batch, t..t + 1, 0..d]).squeeze_dim(1)
}

/// `gru.forward` with the final state. Reset-after gating (burn's default, like PyTorch's):
/// z = σ(x Wz + h Uz), r = σ(x Wr + h Ur), n = tanh(x Wn + r ⊙ (h Un)), h' = n + z ⊙ (h − n),
/// every product with its bias.
pub fn gru(gru: &Gru, x: Tensor<3>, state: Option<Tensor<2>>) -> (Tensor<3>, Tensor<2>) {
    let [batch, len, _] = x.dims();
    let mut h = state.unwrap_or_else(|| Tensor::zeros([batch, gru.d_hidden], &x.device()));
    if !gru.reset_after || gru.clip.is_some() {
        let out = gru.forward(x, Some(h));
        let last = at(&out, len - 1);
        return (out, last);
    }
    let xz = gru.update_gate.input_transform.forward(x.clone());
    let xr = gru.reset_gate.input_transform.forward(x.clone());
    let xn = gru.new_gate.input_transform.forward(x);
    let mut outputs = Vec::with_capacity(len);
    for t in 0..len {
        let z = sigmoid(at(&xz, t) + gru.update_gate.hidden_transform.forward(h.clone()));
        let r = sigmoid(at(&xr, t) + gru.reset_gate.hidden_transform.forward(h.clone()));
        let n = tanh(at(&xn, t) + r * gru.new_gate.hidden_transform.forward(h.clone()));
        h = n.clone() + z * (h - n);
        outputs.push(h.clone());
    }
    (Tensor::stack(outputs, 1), h)
}

/// `lstm.forward`: i, f, o = σ(x W + h U), g = tanh(x Wg + h Ug), c' = f ⊙ c + i ⊙ g,
/// h' = o ⊙ tanh(c'). Variants this file does not cover go to burn's own forward.
pub fn lstm(lstm: &Lstm, x: Tensor<3>, state: Option<LstmState<2>>) -> (Tensor<3>, LstmState<2>) {
    let forget_gate = match &lstm.forget_gate {
        Some(gate) if lstm.clip.is_none() && lstm.batch_first && !lstm.reverse => gate,
        _ => return lstm.forward(x, state),
    };
    let [batch, len, _] = x.dims();
    let (mut c, mut h) = state
        .unwrap_or_else(|| {
            let zeros = Tensor::zeros([batch, lstm.d_hidden], &x.device());
            LstmState::new(zeros.clone(), zeros)
        })
        .unpack();
    let xi = lstm.input_gate.input_transform.forward(x.clone());
    let xf = forget_gate.input_transform.forward(x.clone());
    let xo = lstm.output_gate.input_transform.forward(x.clone());
    let xg = lstm.cell_gate.input_transform.forward(x);
    let mut outputs = Vec::with_capacity(len);
    for t in 0..len {
        let i = sigmoid(at(&xi, t) + lstm.input_gate.hidden_transform.forward(h.clone()));
        let f = sigmoid(at(&xf, t) + forget_gate.hidden_transform.forward(h.clone()));
        let o = sigmoid(at(&xo, t) + lstm.output_gate.hidden_transform.forward(h.clone()));
        let g = tanh(at(&xg, t) + lstm.cell_gate.hidden_transform.forward(h.clone()));
        c = f * c + i * g;
        h = o * tanh(c.clone());
        outputs.push(h.clone());
    }
    (Tensor::stack(outputs, 1), LstmState::new(c, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{GruConfig, LstmConfig};
    use burn::tensor::Distribution;

    fn input(device: &Device) -> Tensor<3> {
        Tensor::random([3, 7, 5], Distribution::Normal(0.0, 1.0), device)
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn tanh_through_sigmoid_is_tanh() {
        let device = Device::flex();
        let x = Tensor::<1>::random([1000], Distribution::Normal(0.0, 4.0), &device);
        assert!(max_diff(tanh(x.clone()), x.tanh()) < 1e-5);
    }

    #[test]
    fn gru_matches_burns_forward_with_and_without_a_state() {
        let device = Device::flex();
        let gru = GruConfig::new(5, 8, true).init(&device);
        let x = input(&device);
        let (ours, last) = super::gru(&gru, x.clone(), None);
        let theirs = gru.forward(x.clone(), None);
        assert!(max_diff(ours.clone(), theirs) < 1e-5);
        assert!(max_diff(last.clone(), at(&ours, 6)) == 0.0);
        let h0 = Tensor::random([3, 8], Distribution::Normal(0.0, 1.0), &device);
        let (ours, _) = super::gru(&gru, x.clone(), Some(h0.clone()));
        assert!(max_diff(ours, gru.forward(x, Some(h0))) < 1e-5);
    }

    #[test]
    fn lstm_matches_burns_forward_with_and_without_a_state() {
        let device = Device::flex();
        let lstm = LstmConfig::new(5, 8, true).init(&device);
        let x = input(&device);
        let (ours, state) = super::lstm(&lstm, x.clone(), None);
        let (theirs, their_state) = lstm.forward(x.clone(), None);
        assert!(max_diff(ours, theirs) < 1e-5);
        assert!(max_diff(state.cell.clone(), their_state.cell.clone()) < 1e-5);
        let (ours, _) = super::lstm(&lstm, x.clone(), Some(state));
        let (theirs, _) = lstm.forward(x, Some(their_state));
        assert!(max_diff(ours, theirs) < 1e-5);
    }
}

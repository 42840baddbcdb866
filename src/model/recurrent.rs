//! Faster forward passes over burn's own `Gru` and `Lstm` modules (same parameters, same
//! checkpoints, same function). Profiling a training step on the CPU backend showed most of
//! the time outside the matrix products in `tanh` (a scalar libm call per element), and many
//! small per-timestep operations. Here the input projections of all timesteps are one matrix
//! product per gate, `tanh` is computed through the backend's faster `sigmoid`
//! (tanh x = 2σ(2x) − 1), and the outputs are stacked once instead of written into a
//! sequence tensor one timestep at a time. Measured with `runner bench` (docs/benchmarks.md).

use super::decode::Incremental;
use crate::kernels;
use crate::spec::ModelSpec;
use burn::module::ModuleDisplay;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, GateController, Gru, Linear, LinearConfig,
    Lstm, LstmState,
};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::module::{embedding, linear};

/// One of burn's recurrent layers as a layer of [`RecurrentLm`]: what differs between the
/// GRU and the LSTM language models (gru.rs, lstm.rs).
pub trait Cell: Module + ModuleDisplay {
    /// What the layer carries from one timestep to the next.
    type State: Clone + Send;
    fn init(d_in: usize, d_hidden: usize, device: &Device) -> Self;
    /// x [batch, len, d_in] -> outputs [batch, len, d_hidden] and the final state.
    fn run(&self, x: Tensor<3>, state: Option<Self::State>) -> (Tensor<3>, Self::State);
    /// `run` for the first layer, from tokens [batch, len] read through `embed`.
    fn run_tokens(
        &self,
        embed: &Embedding,
        tokens: Tensor<2, Int>,
        state: Option<Self::State>,
    ) -> (Tensor<3>, Self::State);
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
        let mut state = state.map(Vec::into_iter);
        let mut last = Vec::with_capacity(self.layers.len());
        let mut x: Option<Tensor<3>> = None;
        for layer in &self.layers {
            let init = state.as_mut().and_then(Iterator::next);
            let (out, final_state) = match x {
                None => layer.run_tokens(&self.embed, tokens.clone(), init),
                Some(x) => layer.run(self.dropout.forward(x), init),
            };
            x = Some(out); // [batch, len, d_hidden]
            last.push(final_state);
        }
        let x = x.expect("a recurrent model has at least one layer");
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
    gru_from(gru, LayerInput::Features(x), state)
}

/// [`gru`] for a first layer, reading tokens through `embed`.
pub fn gru_tokens(
    gru: &Gru,
    embed: &Embedding,
    tokens: Tensor<2, Int>,
    state: Option<Tensor<2>>,
) -> (Tensor<3>, Tensor<2>) {
    gru_from(gru, LayerInput::Tokens(embed, tokens), state)
}

fn gru_from(gru: &Gru, input: LayerInput, state: Option<Tensor<2>>) -> (Tensor<3>, Tensor<2>) {
    let [batch, len] = input.dims();
    let h = state.unwrap_or_else(|| Tensor::zeros([batch, gru.d_hidden], &input.device()));
    let out = if !gru.reset_after || gru.clip.is_some() {
        gru.forward(input.features(), Some(h))
    } else if fusable(&gru_gates(gru), &input.device()) {
        fused_gru(gru, input, h)
    } else {
        composed_gru(gru, input.features(), h)
    };
    let last = at(&out, len - 1);
    (out, last)
}

/// What a recurrent layer reads: the previous layer's outputs, or (first layer) tokens and
/// the embedding, which the fused path folds into the input projection.
enum LayerInput<'a> {
    Features(Tensor<3>),
    Tokens(&'a Embedding, Tensor<2, Int>),
}

impl LayerInput<'_> {
    /// [batch, len]
    fn dims(&self) -> [usize; 2] {
        match self {
            LayerInput::Features(x) => {
                let [batch, len, _] = x.dims();
                [batch, len]
            }
            LayerInput::Tokens(_, tokens) => tokens.dims(),
        }
    }

    fn device(&self) -> Device {
        match self {
            LayerInput::Features(x) => x.device(),
            LayerInput::Tokens(_, tokens) => tokens.device(),
        }
    }

    /// The input itself, [batch, len, d_in].
    fn features(self) -> Tensor<3> {
        match self {
            LayerInput::Features(x) => x,
            LayerInput::Tokens(embed, tokens) => embed.forward(tokens),
        }
    }

    /// x·w + b for every timestep, [batch, len, d_out]. From tokens, the rows of E·w + b
    /// ([vocab, d_out]) are gathered instead: the same values without a product per
    /// token.
    fn project(self, w: Tensor<2>, b: Tensor<1>) -> Tensor<3> {
        match self {
            LayerInput::Features(x) => linear(x, w, Some(b)),
            LayerInput::Tokens(embed, tokens) => {
                embedding(linear(embed.weight.val(), w, Some(b)), tokens)
            }
        }
    }
}

/// [`gru`] as burn operations: the fallback for other backends and the fused kernel's oracle.
fn composed_gru(gru: &Gru, x: Tensor<3>, mut h: Tensor<2>) -> Tensor<3> {
    let len = x.dims()[1];
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
    Tensor::stack(outputs, 1)
}

/// The gates of a GRU in the fused kernel's order.
fn gru_gates(gru: &Gru) -> [&GateController; 3] {
    [&gru.update_gate, &gru.reset_gate, &gru.new_gate]
}

/// Whether a gate's weights are plain f32 (not quantised), as the fused kernels need.
fn f32_weights(gate: &GateController) -> bool {
    [&gate.input_transform, &gate.hidden_transform]
        .iter()
        .all(|l| l.weight.val().dtype() == burn::tensor::DType::F32)
}

/// Whether the fused kernel runs a layer with these gates: burn-flex and f32 weights.
fn fusable(gates: &[&GateController], device: &Device) -> bool {
    kernels::available(device) && gates.iter().all(|g| f32_weights(g))
}

/// Linear layers side by side: weights [d_in, Σ d_out] and biases [Σ d_out] (zeros where
/// a layer has none), so that one product computes all of them.
fn side_by_side(layers: &[&Linear]) -> (Tensor<2>, Tensor<1>) {
    let weights = layers.iter().map(|l| l.weight.val()).collect();
    let biases = layers
        .iter()
        .map(|l| match &l.bias {
            Some(b) => b.val(),
            None => Tensor::zeros([l.weight.dims()[1]], &l.weight.device()),
        })
        .collect();
    (Tensor::cat(weights, 1), Tensor::cat(biases, 0))
}

/// [`gru`] through the fused kernel: one input product for the three gates, then one
/// operation for the whole sequence.
fn fused_gru(gru: &Gru, input: LayerInput, h0: Tensor<2>) -> Tensor<3> {
    let gates = gru_gates(gru);
    let (w, b) = side_by_side(&gates.map(|g| &g.input_transform));
    let (u, bu) = side_by_side(&gates.map(|g| &g.hidden_transform));
    kernels::gru_sequence(input.project(w, b), u, bu, h0)
}

/// `lstm.forward`: i, f, o = σ(x W + h U), g = tanh(x Wg + h Ug), c' = f ⊙ c + i ⊙ g,
/// h' = o ⊙ tanh(c'). Variants this file does not cover go to burn's own forward.
pub fn lstm(lstm: &Lstm, x: Tensor<3>, state: Option<LstmState<2>>) -> (Tensor<3>, LstmState<2>) {
    lstm_from(lstm, LayerInput::Features(x), state)
}

/// [`lstm`] for a first layer, reading tokens through `embed`.
pub fn lstm_tokens(
    lstm: &Lstm,
    embed: &Embedding,
    tokens: Tensor<2, Int>,
    state: Option<LstmState<2>>,
) -> (Tensor<3>, LstmState<2>) {
    lstm_from(lstm, LayerInput::Tokens(embed, tokens), state)
}

fn lstm_from(
    lstm: &Lstm,
    input: LayerInput,
    state: Option<LstmState<2>>,
) -> (Tensor<3>, LstmState<2>) {
    let forget_gate = match &lstm.forget_gate {
        Some(gate) if lstm.clip.is_none() && lstm.batch_first && !lstm.reverse => gate,
        _ => return lstm.forward(input.features(), state),
    };
    let batch = input.dims()[0];
    let (c, h) = state
        .unwrap_or_else(|| {
            let zeros = Tensor::zeros([batch, lstm.d_hidden], &input.device());
            LstmState::new(zeros.clone(), zeros)
        })
        .unpack();
    let gates = [
        &lstm.input_gate,
        forget_gate,
        &lstm.cell_gate,
        &lstm.output_gate,
    ];
    if fusable(&gates, &input.device()) {
        fused_lstm(gates, input, h, c)
    } else {
        composed_lstm(lstm, forget_gate, input.features(), h, c)
    }
}

/// [`lstm`] through the fused kernel, `gates` in its order (input, forget, cell, output).
fn fused_lstm(
    gates: [&GateController; 4],
    input: LayerInput,
    h0: Tensor<2>,
    c0: Tensor<2>,
) -> (Tensor<3>, LstmState<2>) {
    let [batch, len] = input.dims();
    let (w, b) = side_by_side(&gates.map(|g| &g.input_transform));
    let (u, bu) = side_by_side(&gates.map(|g| &g.hidden_transform));
    let hidden = u.dims()[0];
    let both = kernels::lstm_sequence(input.project(w, b), u, bu, h0, c0);
    let c = both
        .clone()
        .slice([0..batch, len - 1..len, hidden..2 * hidden])
        .squeeze_dim(1);
    let out = both.slice([0..batch, 0..len, 0..hidden]);
    let h = at(&out, len - 1);
    (out, LstmState::new(c, h))
}

/// [`lstm`] as burn operations: the fallback for other backends and the fused kernel's oracle.
fn composed_lstm(
    lstm: &Lstm,
    forget_gate: &GateController,
    x: Tensor<3>,
    mut h: Tensor<2>,
    mut c: Tensor<2>,
) -> (Tensor<3>, LstmState<2>) {
    let len = x.dims()[1];
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

    /// Σ w ⊙ out, and the gradients of x, h0 and every GRU parameter under it.
    fn gru_grads(
        gru: &Gru,
        fused: bool,
        x: &Tensor<3>,
        h0: &Tensor<2>,
        w: &Tensor<3>,
    ) -> (Tensor<3>, Vec<Tensor<2>>) {
        let (x, h0) = (x.clone().require_grad(), h0.clone().require_grad());
        let out = if fused {
            fused_gru(gru, LayerInput::Features(x.clone()), h0.clone())
        } else {
            composed_gru(gru, x.clone(), h0.clone())
        };
        let grads = (out.clone() * w.clone()).sum().backward();
        let mut all = vec![
            x.grad(&grads).unwrap().flatten(0, 1),
            h0.grad(&grads).unwrap(),
        ];
        for g in gru_gates(gru) {
            for l in [&g.input_transform, &g.hidden_transform] {
                all.push(l.weight.grad(&grads).unwrap());
                all.push(l.bias.as_ref().unwrap().grad(&grads).unwrap().unsqueeze());
            }
        }
        (out, all)
    }

    #[test]
    fn fused_gru_matches_the_composed_one_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        // Odd sizes, one row, a batch large enough to be split across threads, and a
        // hidden size of one 16-lane block and a remainder (the kernels' element-wise loops).
        for (batch, len, d_in, hidden) in
            [(3, 7, 5, 8), (1, 1, 3, 4), (40, 12, 6, 16), (5, 4, 3, 21)]
        {
            let gru = GruConfig::new(d_in, hidden, true).init(&device);
            let x = Tensor::random([batch, len, d_in], Distribution::Normal(0.0, 1.0), &device);
            let h0 = Tensor::random([batch, hidden], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::random(
                [batch, len, hidden],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let (fused, fused_grads) = gru_grads(&gru, true, &x, &h0, &w);
            let (composed, composed_grads) = gru_grads(&gru, false, &x, &h0, &w);
            assert!(max_diff(fused, composed) < 1e-5, "outputs differ");
            for (i, (a, b)) in fused_grads.into_iter().zip(composed_grads).enumerate() {
                let err = relative(a, b);
                assert!(
                    err < 1e-4,
                    "gradient {i} differs: relative {err:e} ({batch}x{len}x{hidden})"
                );
            }
        }
    }

    /// Relative max difference, scaled by the larger of 1 and b's largest magnitude.
    fn relative<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
        max_diff(a, b) / scale
    }

    #[test]
    fn folding_the_embedding_into_the_first_layer_changes_nothing() {
        let device = Device::flex().autodiff();
        let embed = EmbeddingConfig::new(11, 6).init(&device);
        let gru = GruConfig::new(6, 8, true).init(&device);
        let tokens = Tensor::<2, Int>::from_data([[1, 4, 4, 10, 0], [3, 3, 2, 7, 9]], &device);
        let h0 = Tensor::zeros([2, 8], &device);
        let w = Tensor::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let folded = fused_gru(&gru, LayerInput::Tokens(&embed, tokens.clone()), h0.clone());
        let plain = composed_gru(&gru, embed.forward(tokens), h0);
        assert!(max_diff(folded.clone(), plain.clone()) < 1e-5);
        let grad = |out: Tensor<3>| {
            let grads = (out * w.clone()).sum().backward();
            embed.weight.grad(&grads).unwrap()
        };
        assert!(
            relative(grad(folded), grad(plain)) < 1e-4,
            "embedding gradients differ"
        );
    }

    #[test]
    fn fused_lstm_matches_the_composed_one_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        for (batch, len, d_in, hidden) in
            [(3, 7, 5, 8), (1, 1, 3, 4), (40, 12, 6, 16), (5, 4, 3, 21)]
        {
            let lstm = LstmConfig::new(d_in, hidden, true).init(&device);
            let forget = lstm.forget_gate.as_ref().unwrap();
            let gates = [&lstm.input_gate, forget, &lstm.cell_gate, &lstm.output_gate];
            let x = Tensor::random([batch, len, d_in], Distribution::Normal(0.0, 1.0), &device);
            let h0 = Tensor::random([batch, hidden], Distribution::Normal(0.0, 1.0), &device);
            let c0 = Tensor::random([batch, hidden], Distribution::Normal(0.0, 1.0), &device);
            let w = Tensor::random(
                [batch, len, hidden],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let wc = Tensor::random([batch, hidden], Distribution::Normal(0.0, 1.0), &device);
            let mut results = Vec::new();
            for fused in [true, false] {
                let (x, h0, c0) = (
                    x.clone().require_grad(),
                    h0.clone().require_grad(),
                    c0.clone().require_grad(),
                );
                let (out, state) = if fused {
                    fused_lstm(
                        gates,
                        LayerInput::Features(x.clone()),
                        h0.clone(),
                        c0.clone(),
                    )
                } else {
                    composed_lstm(&lstm, forget, x.clone(), h0.clone(), c0.clone())
                };
                // The final cell state is in the loss too: decoding carries it.
                let loss =
                    (out.clone() * w.clone()).sum() + (state.cell.clone() * wc.clone()).sum();
                let grads = loss.backward();
                let mut all = vec![
                    x.grad(&grads).unwrap().flatten(0, 1),
                    h0.grad(&grads).unwrap(),
                    c0.grad(&grads).unwrap(),
                ];
                for g in gates {
                    for l in [&g.input_transform, &g.hidden_transform] {
                        all.push(l.weight.grad(&grads).unwrap());
                        all.push(l.bias.as_ref().unwrap().grad(&grads).unwrap().unsqueeze());
                    }
                }
                results.push((out, state.cell, all));
            }
            let (composed, fused) = (results.pop().unwrap(), results.pop().unwrap());
            assert!(max_diff(fused.0, composed.0) < 1e-5, "outputs differ");
            assert!(
                max_diff(fused.1, composed.1) < 1e-5,
                "final cell states differ"
            );
            for (i, (a, b)) in fused.2.into_iter().zip(composed.2).enumerate() {
                let err = relative(a, b);
                assert!(
                    err < 1e-4,
                    "gradient {i} differs: relative {err:e} ({batch}x{len}x{hidden})"
                );
            }
        }
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

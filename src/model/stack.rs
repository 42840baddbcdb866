//! Stack-augmented model (`model.arch = "stack"`): a controller that reads the top of a
//! differentiable stack and, at each token, pushes, pops or leaves it as it is, all three at
//! once weighted by a softmax (Joulin & Mikolov 2015; Suzgun et al. 2019). A bracket string
//! is a tree walked depth first, and a stack is exactly the memory that walk needs: push an
//! opener, pop at its closer, read the top to know which closer comes next. With the stack
//! holding what is open, the controller only has to learn the actions, which is why such a
//! model can close deeper and longer prefixes than it trained on.
//!
//! The controller is a GRU cell whose input also carries the top (`stack_controller =
//! "gru"`, as in the papers), or the same cell without a previous state (`"feedforward"`,
//! the default). Measured (docs/generalisation.md): the recurrent one often keeps what is
//! open in its own state instead, and then fails past the training depth like a GRU; the
//! feed-forward one has nowhere else to keep it.
//!
//! The stack is `model.stack_depth` slots of `model.stack_width` values [batch, depth,
//! width]; a push onto a full stack drops the bottom slot, so memory stays bounded.
//! `model.n_layers − 1` plain GRU layers may sit below the controller.

use super::decode::{last_position, Incremental};
use super::recurrent::{at, tanh};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Gru, GruConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};

/// The soft actions, in the order of their probabilities.
pub const ACTIONS: [&str; 3] = ["push", "pop", "no-op"];

#[derive(Module, Debug)]
pub struct Stack {
    pub(super) embed: Embedding,
    pub(super) lower: Vec<Gru>,
    pub(super) controller: Controller,
    dropout: Dropout,
    /// Reads the controller's state and the stack's top after the step.
    pub(super) head: Linear,
}

/// A GRU cell (reset-after gating, as burn's and PyTorch's) whose input also carries the
/// stack's top slot, with the two heads that drive the stack.
#[derive(Module, Debug)]
pub struct Controller {
    /// The layer's input to the update, reset and new gates [d_in, 3·d_hidden]: one
    /// product for every timestep at once.
    pub(super) input: Linear,
    /// The stack's top slot to the gates [width, 3·d_hidden].
    pub(super) read: Linear,
    /// The previous state to the gates [d_hidden, 3·d_hidden]; none for a feed-forward
    /// controller (`model.stack_controller = "feedforward"`), which sees only the token and
    /// the top.
    pub(super) hidden: Option<Linear>,
    /// The new state to the logits of push, pop and no-op.
    pub(super) action: Linear,
    /// The new state to the vector a push writes.
    pub(super) push: Linear,
    #[module(skip)]
    depth: usize,
    #[module(skip)]
    width: usize,
    #[module(skip)]
    d_hidden: usize,
}

/// What the model carries from one token to the next.
#[derive(Clone)]
pub struct StackState {
    lower: Vec<Tensor<2>>,
    hidden: Tensor<2>,
    /// [batch, depth, width], the top at slot 0.
    stack: Tensor<3>,
}

/// The controller over a sequence: per-step values and the final state.
pub struct Run {
    /// The controller's state after each step [batch, len, d_hidden].
    pub hidden: Tensor<3>,
    /// The stack's top slot after each step [batch, len, width].
    pub top: Tensor<3>,
    /// push, pop and no-op probabilities at each step [batch, len, 3].
    pub actions: Tensor<3>,
    pub hidden_last: Tensor<2>,
    pub stack_last: Tensor<3>,
}

/// Sizes of the stack model, from the spec.
#[derive(Debug, Clone, Copy)]
pub struct StackShape {
    pub vocab_size: usize,
    pub d_embed: usize,
    pub d_hidden: usize,
    pub n_layers: usize,
    pub depth: usize,
    pub width: usize,
    pub dropout: f64,
    /// A GRU controller (its state carried from token to token), or a feed-forward one.
    pub recurrent: bool,
}

impl StackShape {
    pub fn of(spec: &crate::spec::Spec, vocab_size: usize) -> Self {
        let m = &spec.model;
        Self {
            vocab_size,
            d_embed: m.d_embed,
            d_hidden: m.d_hidden,
            n_layers: m.n_layers,
            depth: spec.stack_depth(),
            width: m.stack_width,
            dropout: m.dropout,
            recurrent: m.stack_controller == crate::spec::StackController::Gru,
        }
    }
}

impl Stack {
    pub fn init(shape: &StackShape, device: &Device) -> Self {
        let h = shape.d_hidden;
        let lower: Vec<Gru> = (1..shape.n_layers)
            .map(|i| {
                let d_in = if i == 1 { shape.d_embed } else { h };
                GruConfig::new(d_in, h, true).init(device)
            })
            .collect();
        let d_in = if lower.is_empty() { shape.d_embed } else { h };
        let controller = Controller {
            input: LinearConfig::new(d_in, 3 * h).init(device),
            read: LinearConfig::new(shape.width, 3 * h)
                .with_bias(false)
                .init(device),
            hidden: shape
                .recurrent
                .then(|| LinearConfig::new(h, 3 * h).init(device)),
            action: LinearConfig::new(h, ACTIONS.len()).init(device),
            push: LinearConfig::new(h, shape.width).init(device),
            depth: shape.depth,
            width: shape.width,
            d_hidden: h,
        };
        Self {
            embed: EmbeddingConfig::new(shape.vocab_size, shape.d_embed).init(device),
            lower,
            controller,
            dropout: DropoutConfig::new(shape.dropout).init(),
            head: LinearConfig::new(h + shape.width, shape.vocab_size).init(device),
        }
    }

    /// # Shapes
    /// tokens [batch, len] -> logits [batch, len, vocab]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.run(tokens, None).0
    }

    /// The controller's input after the embedding and the lower layers, and their final
    /// states.
    fn below(
        &self,
        tokens: Tensor<2, Int>,
        state: Option<&[Tensor<2>]>,
    ) -> (Tensor<3>, Vec<Tensor<2>>) {
        let mut x = self.embed.forward(tokens);
        let mut last = Vec::with_capacity(self.lower.len());
        for (i, layer) in self.lower.iter().enumerate() {
            let init = state.map(|s| s[i].clone());
            let input = if i > 0 { self.dropout.forward(x) } else { x };
            let (out, h) = super::recurrent::gru(layer, input, init);
            x = out;
            last.push(h);
        }
        (x, last)
    }

    /// Logits from the head over each step's state and top.
    pub(super) fn logits(&self, run: &Run) -> Tensor<3> {
        let features = Tensor::cat(vec![run.hidden.clone(), run.top.clone()], 2);
        self.head.forward(self.dropout.forward(features))
    }

    fn run(&self, tokens: Tensor<2, Int>, state: Option<StackState>) -> (Tensor<3>, StackState) {
        let (x, lower) = self.below(tokens, state.as_ref().map(|s| s.lower.as_slice()));
        // Dropout between layers, as in the GRU model: none on the embedding itself.
        let x = if self.lower.is_empty() {
            x
        } else {
            self.dropout.forward(x)
        };
        let run = self.controller.run(x, state.map(|s| (s.hidden, s.stack)));
        let logits = self.logits(&run);
        let state = StackState {
            lower,
            hidden: run.hidden_last,
            stack: run.stack_last,
        };
        (logits, state)
    }
}

impl Controller {
    /// x [batch, len, d_in] from an optional (state, stack); zeros otherwise.
    pub fn run(&self, x: Tensor<3>, state: Option<(Tensor<2>, Tensor<3>)>) -> Run {
        let [batch, len, _] = x.dims();
        let device = x.device();
        let (mut h, mut stack) = state.unwrap_or_else(|| {
            (
                Tensor::zeros([batch, self.d_hidden], &device),
                Tensor::zeros([batch, self.depth, self.width], &device),
            )
        });
        let gx = self.input.forward(x); // [batch, len, 3h]
        let (mut hidden, mut top, mut actions) = (
            Vec::with_capacity(len),
            Vec::with_capacity(len),
            Vec::with_capacity(len),
        );
        for t in 0..len {
            let read = stack
                .clone()
                .slice([0..batch, 0..1, 0..self.width])
                .reshape([batch, self.width]);
            let g = at(&gx, t) + self.read.forward(read);
            let previous = self
                .hidden
                .as_ref()
                .map(|u| (u.forward(h.clone()), h.clone()));
            h = self.cell(g, previous);
            let a = softmax(self.action.forward(h.clone()), 1); // [batch, 3]
            let v = tanh(self.push.forward(h.clone())); // [batch, width]
            stack = update(stack, a.clone(), v);
            hidden.push(h.clone());
            top.push(
                stack
                    .clone()
                    .slice([0..batch, 0..1, 0..self.width])
                    .reshape([batch, self.width]),
            );
            actions.push(a);
        }
        Run {
            hidden: Tensor::stack(hidden, 1),
            top: Tensor::stack(top, 1),
            actions: Tensor::stack(actions, 1),
            hidden_last: h,
            stack_last: stack,
        }
    }

    /// z = σ(g_z + gh_z), r = σ(g_r + gh_r), n = tanh(g_n + r ⊙ gh_n), h' = n + z ⊙ (h − n),
    /// with gh = h·U + b the previous state's part. Without one (feed-forward) h = 0 and
    /// gh = 0, so h' = (1 − z) ⊙ tanh(g_n): a gated layer over the token and the top.
    fn cell(&self, g: Tensor<2>, previous: Option<(Tensor<2>, Tensor<2>)>) -> Tensor<2> {
        let [batch, _] = g.dims();
        let d = self.d_hidden;
        let part = |t: &Tensor<2>, k: usize| t.clone().slice([0..batch, k * d..(k + 1) * d]);
        match previous {
            Some((gh, h)) => {
                let z = sigmoid(part(&g, 0) + part(&gh, 0));
                let r = sigmoid(part(&g, 1) + part(&gh, 1));
                let n = tanh(part(&g, 2) + r * part(&gh, 2));
                n.clone() + z * (h - n)
            }
            None => {
                let z = sigmoid(part(&g, 0));
                let n = tanh(part(&g, 2));
                n.clone() - z * n
            }
        }
    }
}

/// One soft step of the stack [batch, depth, width]: the mixture of pushing `v`
/// [batch, width] (every slot moves down one, the bottom falls off), popping (every slot
/// moves up one, zeros enter at the bottom) and leaving it, weighted by `actions`
/// [batch, 3] (push, pop, no-op; they sum to one). A convex mixture of slots, so values
/// stay within those pushed.
pub fn update(stack: Tensor<3>, actions: Tensor<2>, v: Tensor<2>) -> Tensor<3> {
    let [batch, depth, width] = stack.dims();
    let device = stack.device();
    let pushed = Tensor::cat(
        vec![
            v.reshape([batch, 1, width]),
            stack.clone().slice([0..batch, 0..depth - 1, 0..width]),
        ],
        1,
    );
    let popped = Tensor::cat(
        vec![
            stack.clone().slice([0..batch, 1..depth, 0..width]),
            Tensor::zeros([batch, 1, width], &device),
        ],
        1,
    );
    let weight = |k: usize| {
        actions
            .clone()
            .slice([0..batch, k..k + 1])
            .reshape([batch, 1, 1])
    };
    pushed * weight(0) + popped * weight(1) + stack * weight(2)
}

impl Incremental for Stack {
    type State = StackState;

    fn prefill(&self, tokens: Tensor<2, Int>) -> (Tensor<2>, StackState) {
        let (logits, state) = self.run(tokens, None);
        (last_position(logits), state)
    }

    fn step(&self, tokens: Tensor<2, Int>, state: StackState) -> (Tensor<2>, StackState) {
        let (logits, state) = self.run(tokens, Some(state));
        (last_position(logits), state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn shape(depth: usize) -> StackShape {
        StackShape {
            vocab_size: 7,
            d_embed: 4,
            d_hidden: 6,
            n_layers: 2,
            depth,
            width: 3,
            dropout: 0.0,
            recurrent: true,
        }
    }

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.to_data().iter::<f32>().collect()
    }

    #[test]
    fn hard_actions_push_pop_and_bound_the_stack() {
        let device = Device::flex();
        let act = |k: usize| {
            let mut a = [0.0f32; 3];
            a[k] = 1.0;
            Tensor::<2>::from_data(TensorData::new(a.to_vec(), [1, 3]), &device)
        };
        let vec = |x: f32| Tensor::<2>::from_data(TensorData::new(vec![x; 2], [1, 2]), &device);
        let mut s = Tensor::<3>::zeros([1, 3, 2], &device);
        for x in [1.0, 2.0, 3.0, 4.0] {
            s = update(s, act(0), vec(x));
        }
        // Four pushes onto three slots: the first fell off the bottom.
        assert_eq!(values(s.clone()), vec![4.0, 4.0, 3.0, 3.0, 2.0, 2.0]);
        s = update(s, act(2), vec(9.0));
        assert_eq!(values(s.clone()), vec![4.0, 4.0, 3.0, 3.0, 2.0, 2.0]);
        s = update(s, act(1), vec(9.0));
        assert_eq!(values(s.clone()), vec![3.0, 3.0, 2.0, 2.0, 0.0, 0.0]);
        for _ in 0..3 {
            s = update(s, act(1), vec(9.0));
        }
        // Popping an empty stack leaves it empty.
        assert_eq!(values(s), vec![0.0; 6]);
    }

    #[test]
    fn the_soft_stack_stays_bounded_and_its_actions_sum_to_one() {
        let device = Device::flex();
        let model = Stack::init(&shape(4), &device);
        // Far longer than the stack is deep: the shape and the values stay bounded.
        let x = Tensor::<3>::random([3, 50, 6], Distribution::Normal(0.0, 3.0), &device);
        let run = model.controller.run(x, None);
        assert_eq!(run.stack_last.dims(), [3, 4, 3]);
        assert!(values(run.stack_last).iter().all(|v| v.abs() <= 1.0));
        let a = values(run.actions);
        assert_eq!(a.len(), 3 * 50 * 3);
        for step in a.chunks(3) {
            assert!(step.iter().all(|p| (0.0..=1.0).contains(p)));
            assert!((step.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{step:?}");
        }
    }

    #[test]
    fn a_feed_forward_controller_has_no_recurrent_weights() {
        let device = Device::flex();
        let ff = Stack::init(
            &StackShape {
                recurrent: false,
                ..shape(4)
            },
            &device,
        );
        let gru = Stack::init(&shape(4), &device);
        assert!(ff.controller.hidden.is_none() && gru.controller.hidden.is_some());
        assert_eq!(gru.num_params() - ff.num_params(), 6 * 18 + 18);
    }

    #[test]
    fn carried_state_continues_the_sequence_exactly() {
        let device = Device::flex();
        for recurrent in [true, false] {
            carries_state(Stack::init(
                &StackShape {
                    recurrent,
                    ..shape(5)
                },
                &device,
            ));
        }
    }

    fn carries_state(model: Stack) {
        let device = Device::flex();
        let ids: Vec<i64> = vec![1, 2, 3, 2, 4, 5, 1, 6, 2];
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, 9]), &device);
        let whole = model.forward(tokens.clone());
        let head = tokens.clone().slice([0..1, 0..5]);
        let (_, mut state) = model.prefill(head);
        for t in 5..9 {
            let next = tokens.clone().slice([0..1, t..t + 1]);
            let (logits, s) = model.step(next, state);
            state = s;
            let [_, _, vocab] = whole.dims();
            let want = whole
                .clone()
                .slice([0..1, t..t + 1, 0..vocab])
                .reshape([1, vocab]);
            let diff: f32 = (logits - want).abs().max().into_scalar();
            assert!(diff < 1e-5, "step {t}: {diff}");
        }
    }
}

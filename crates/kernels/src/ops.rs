//! The fused kernels as burn tensor operations: a backend extension implemented for burn-flex
//! (forward) and for autodiff over burn-flex (forward, plus a hand-written backward pass).
//! Other backends never reach these: callers check [`super::available`] first and use the
//! composed path otherwise.

use super::gru::{self, Dims, Saved};
use super::{
    adamw as adam, attention as core, linear as dense, loss, lstm, math, norm, rope as rotary,
};
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{BoolTensor, FloatTensor, IntTensor};
use burn::backend::{backend_extension, Autodiff, DType, Dispatch, Flex, TensorData};
use burn::prelude::*;
use std::borrow::Cow;

#[backend_extension(Flex, Autodiff)]
pub trait FusedBackend: burn::backend::Backend {
    /// One GRU layer over a sequence: xp [batch, len, 3H], u [H, 3H], bu [3H], h0 [batch, H]
    /// -> outputs [batch, len, H].
    fn gru_sequence(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bu: FloatTensor<Self>,
        h0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// One LSTM layer over a sequence: xp [batch, len, 4H], u [H, 4H], bu [4H], h0 and c0
    /// [batch, H] -> h and c of every step side by side, [batch, len, 2H].
    fn lstm_sequence(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bu: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// GELU (exact, erf form) of every element.
    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Rotary positions on x [batch, len, heads · d_k], positions 0..len.
    fn rope(x: FloatTensor<Self>, heads: usize) -> FloatTensor<Self>;

    /// Layer norm over the last dimension with ε = 1e-5: x [.., d], gamma and beta [d].
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The core of multi-head attention: q [batch, queries, D], k and v [batch, keys, D],
    /// mask [batch, queries, keys] (true = masked, its score set to `fill`) -> the heads'
    /// outputs side by side, [batch, queries, D].
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        heads: usize,
        fill: f32,
    ) -> FloatTensor<Self>;

    /// A linear layer over the last dimension: x [.., inputs], weight [inputs, outputs],
    /// bias [outputs] -> [.., outputs].
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// Cross-entropy of logits [rows, classes] against targets [rows], rows whose target is
    /// `pad` not scored, with label smoothing `smoothing`: the mean, [1].
    fn cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        pad: i64,
        smoothing: f32,
    ) -> FloatTensor<Self>;
}

/// Operations on plain (untracked) tensors: the optimiser's, which run on a parameter's
/// value outside the autodiff graph.
#[backend_extension(Flex)]
pub trait StepBackend: burn::backend::Backend {
    /// One AdamW step (see [`adamw`](super::adamw)): the new parameter, m₁ and m₂;
    /// `max_norm` 0 clips nothing.
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        m1: FloatTensor<Self>,
        m2: FloatTensor<Self>,
        lr: f64,
        time: i32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
        max_norm: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// One AdamW step on a parameter's value (see [`adamw`](super::adamw)); `time` is the step
/// number from 1, whose moments are zero: the new value, m₁ and m₂.
pub fn adamw<const D: usize>(
    h: adam::Hyper,
    lr: f64,
    time: i32,
    [param, grad, m1, m2]: [Tensor<D>; 4],
) -> [Tensor<D>; 3] {
    let (p, a, b) = <Dispatch as StepBackend>::adamw(
        param.into_dispatch(),
        grad.into_dispatch(),
        m1.into_dispatch(),
        m2.into_dispatch(),
        lr,
        time,
        h.beta_1,
        h.beta_2,
        h.epsilon,
        h.weight_decay,
        h.max_norm.unwrap_or(0.0),
    );
    [p, a, b].map(Tensor::from_dispatch)
}

impl StepBackend for Flex {
    fn adamw(
        param: FlexTensor,
        grad: FlexTensor,
        m1: FlexTensor,
        m2: FlexTensor,
        lr: f64,
        time: i32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        weight_decay: f32,
        max_norm: f32,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let h = adam::Hyper {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            max_norm: (max_norm > 0.0).then_some(max_norm),
        };
        let (mut p, mut a, mut b) = (writable(param), writable(m1), writable(m2));
        adam::step(
            h,
            lr,
            time,
            p.storage_mut(),
            &values(&grad),
            a.storage_mut(),
            b.storage_mut(),
        );
        (p, a, b)
    }
}

/// `t` itself when nothing else holds its buffer and it is laid out densely from the start,
/// else a dense copy: a tensor whose storage can be overwritten, exactly its values.
fn writable(t: FlexTensor) -> FlexTensor {
    let dense = t.layout().contiguous_offsets() == Some((0, t.layout().shape().num_elements()));
    if t.is_unique() && dense && t.storage::<f32>().len() == t.layout().shape().num_elements() {
        t
    } else {
        tensor(values(&t).into_owned(), t.layout().shape())
    }
}

/// The ε of burn's `LayerNormConfig` default, which every layer norm here is built with.
pub const LAYER_NORM_EPS: f32 = 1e-5;

/// The outputs [batch, len, H] of one GRU layer (see [`gru`](super::gru)).
pub fn gru_sequence(xp: Tensor<3>, u: Tensor<2>, bu: Tensor<1>, h0: Tensor<2>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::gru_sequence(
        xp.into_dispatch(),
        u.into_dispatch(),
        bu.into_dispatch(),
        h0.into_dispatch(),
    ))
}

/// h and c of every step of one LSTM layer, [batch, len, 2H] (see [`lstm`](super::lstm)).
pub fn lstm_sequence(
    xp: Tensor<3>,
    u: Tensor<2>,
    bu: Tensor<1>,
    h0: Tensor<2>,
    c0: Tensor<2>,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::lstm_sequence(
        xp.into_dispatch(),
        u.into_dispatch(),
        bu.into_dispatch(),
        h0.into_dispatch(),
        c0.into_dispatch(),
    ))
}

/// GELU of every element (see [`math`](super::math) for its error bound).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::gelu(x.into_dispatch()))
}

/// Rotary positions on [batch, len, heads · d_k] (see [`rope`](super::rope)).
pub fn rope(x: Tensor<3>, heads: usize) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::rope(x.into_dispatch(), heads))
}

/// Layer norm of `x` over its last dimension (see [`norm`](super::norm)).
pub fn layer_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
    ))
}

/// Softmax attention of `heads` heads (see [`attention`](super::attention)); `mask` is true
/// where a query must not see a key.
pub fn attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: Tensor<3, Bool>,
    heads: usize,
    fill: f32,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        mask.into_dispatch(),
        heads,
        fill,
    ))
}

/// x·W + b over the last dimension of `x` (see [`linear`](super::linear)).
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Tensor<1>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::linear(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    ))
}

/// burn's `CrossEntropyLoss` with a pad token (see [`loss`](super::loss)).
pub fn cross_entropy(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    pad: i64,
    smoothing: f32,
) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as FusedBackend>::cross_entropy(
        logits.into_dispatch(),
        targets.into_dispatch(),
        pad,
        smoothing,
    ))
}

/// A tensor's values in row-major order, borrowed when already laid out that way.
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    assert_eq!(t.dtype(), DType::F32, "fused kernels take f32 tensors");
    match t.as_slice::<f32>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.to_contiguous()
                .as_slice::<f32>()
                .expect("contiguous")
                .to_vec(),
        ),
    }
}

/// A bool tensor's values in row-major order.
fn flags(t: &FlexTensor) -> Vec<bool> {
    t.clone().into_data().iter::<bool>().collect()
}

/// An integer tensor's values in row-major order.
fn ints(t: &FlexTensor) -> Vec<i64> {
    t.clone().into_data().iter::<i64>().collect()
}

/// The sizes of a linear call, and the output's shape.
fn linear_dims(x: &FlexTensor, weight: &FlexTensor) -> (dense::Dims, Vec<usize>) {
    let [inputs, outputs] = weight.layout().shape().dims::<2>();
    let shape = x.layout().shape().to_vec();
    assert_eq!(
        shape.last(),
        Some(&inputs),
        "linear: x {shape:?} against weight [{inputs}, {outputs}]"
    );
    let rows = shape.iter().product::<usize>() / inputs.max(1);
    let mut out = shape;
    *out.last_mut().expect("x has a last dimension") = outputs;
    (
        dense::Dims {
            rows,
            inputs,
            outputs,
        },
        out,
    )
}

fn linear_forward(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor) -> FlexTensor {
    let (d, shape) = linear_dims(x, weight);
    tensor(
        dense::forward(d, &values(x), &values(weight), &values(bias)),
        &shape,
    )
}

fn loss_dims(logits: &FlexTensor, pad: i64, smoothing: f32) -> loss::Dims {
    let [rows, classes] = logits.layout().shape().dims::<2>();
    loss::Dims {
        rows,
        classes,
        pad,
        smoothing,
    }
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// The sizes of a call whose xp and u hold `gates` gates side by side.
fn dims(xp: &FlexTensor, u: &FlexTensor, gates: usize) -> Dims {
    let [batch, len, width] = xp.layout().shape().dims::<3>();
    let [hidden, u_width] = u.layout().shape().dims::<2>();
    assert!(
        width == gates * hidden && u_width == width,
        "fused recurrent layer: xp width {width} and u [{hidden}, {u_width}] disagree"
    );
    Dims { batch, len, hidden }
}

fn gru_forward(
    xp: &FlexTensor,
    u: &FlexTensor,
    bu: &FlexTensor,
    h0: &FlexTensor,
) -> (FlexTensor, Saved) {
    let d = dims(xp, u, 3);
    let (hs, saved) = gru::forward(d, &values(xp), &values(u), &values(bu), &values(h0));
    (tensor(hs, &[d.batch, d.len, d.hidden]), saved)
}

fn lstm_forward([xp, u, bu, h0, c0]: [&FlexTensor; 5]) -> (FlexTensor, lstm::Saved) {
    let d = dims(xp, u, 4);
    let (out, saved) = lstm::forward(
        d,
        &values(xp),
        &values(u),
        &values(bu),
        &values(h0),
        &values(c0),
    );
    (tensor(out, &[d.batch, d.len, 2 * d.hidden]), saved)
}

/// Hands each tracked parent its gradient, made a tensor of the given shape.
fn register<const N: usize>(
    grads: &mut Gradients,
    parents: [(Option<NodeId>, Vec<f32>, Vec<usize>); N],
) {
    for (node, grad, shape) in parents {
        if let Some(id) = node {
            grads.register::<Flex>(id, tensor(grad, &shape));
        }
    }
}

/// `f` applied to every element of `x`, into a new tensor of its shape.
fn map(x: &FlexTensor, f: fn(&mut [f32])) -> FlexTensor {
    let mut out = values(x).into_owned();
    f(&mut out);
    tensor(out, x.layout().shape())
}

fn layer_norm_forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let d = gamma.layout().shape().num_elements();
    let (y, mean, rstd) =
        norm::forward(d, &values(x), &values(gamma), &values(beta), LAYER_NORM_EPS);
    (tensor(y, x.layout().shape()), mean, rstd)
}

/// The width of one head of `heads` side by side in `width` (`op` names the caller).
fn head_width(op: &str, width: usize, heads: usize) -> usize {
    assert!(
        heads > 0 && width.is_multiple_of(heads),
        "fused {op}: width {width} does not split into {heads} heads"
    );
    width / heads
}

/// Rotary positions on x [batch, len, heads · d_k], and the call's sizes.
fn rope_forward(x: &FlexTensor, heads: usize) -> (FlexTensor, rotary::Dims) {
    let [batch, len, width] = x.layout().shape().dims::<3>();
    let d = rotary::Dims {
        batch,
        len,
        heads,
        d_k: head_width("rope", width, heads),
    };
    (
        tensor(rotary::forward(d, &values(x)), x.layout().shape()),
        d,
    )
}

/// The sizes of an attention call.
fn attention_dims(q: &FlexTensor, k: &FlexTensor, heads: usize) -> core::Dims {
    let [batch, queries, width] = q.layout().shape().dims::<3>();
    let [_, keys, _] = k.layout().shape().dims::<3>();
    core::Dims {
        batch,
        queries,
        keys,
        heads,
        d_k: head_width("attention", width, heads),
    }
}

fn attention_forward(
    [q, k, v]: [&FlexTensor; 3],
    mask: &[bool],
    heads: usize,
    fill: f32,
) -> (FlexTensor, Vec<f32>, core::Dims) {
    let d = attention_dims(q, k, heads);
    let (out, p) = core::forward(d, &values(q), &values(k), &values(v), mask, fill);
    (tensor(out, q.layout().shape()), p, d)
}

impl FusedBackend for Flex {
    fn linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        linear_forward(&x, &weight, &bias)
    }

    fn cross_entropy(
        logits: FlexTensor,
        targets: FlexTensor,
        pad: i64,
        smoothing: f32,
    ) -> FlexTensor {
        let d = loss_dims(&logits, pad, smoothing);
        let (value, _) = loss::forward(d, &values(&logits), &ints(&targets));
        tensor(vec![value], &[1])
    }

    fn attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        mask: FlexTensor,
        heads: usize,
        fill: f32,
    ) -> FlexTensor {
        attention_forward([&q, &k, &v], &flags(&mask), heads, fill).0
    }

    fn gelu(x: FlexTensor) -> FlexTensor {
        map(&x, math::gelu)
    }

    fn rope(x: FlexTensor, heads: usize) -> FlexTensor {
        rope_forward(&x, heads).0
    }

    fn layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor) -> FlexTensor {
        layer_norm_forward(&x, &gamma, &beta).0
    }

    fn gru_sequence(xp: FlexTensor, u: FlexTensor, bu: FlexTensor, h0: FlexTensor) -> FlexTensor {
        gru_forward(&xp, &u, &bu, &h0).0
    }

    fn lstm_sequence(
        xp: FlexTensor,
        u: FlexTensor,
        bu: FlexTensor,
        h0: FlexTensor,
        c0: FlexTensor,
    ) -> FlexTensor {
        lstm_forward([&xp, &u, &bu, &h0, &c0]).0
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            let dx = math::gelu_backward(&values(&ops.state), &values(&dy));
            grads.register::<Flex>(node.id, tensor(dx, ops.state.layout().shape()));
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl Backward<Flex, 1> for RopeBackward {
    /// The sizes: the angles are recomputed, not kept.
    type State = rotary::Dims;

    fn backward(self, ops: Ops<rotary::Dims, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        if let [Some(node)] = ops.parents {
            let dx = rotary::backward(ops.state, &values(&dy));
            grads.register::<Flex>(node.id, tensor(dx, dy.layout().shape()));
        }
    }
}

/// What layer norm's backward pass keeps: x, γ, each row's μ and 1/σ.
#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    mean: std::sync::Arc<Vec<f32>>,
    rstd: std::sync::Arc<Vec<f32>>,
}

#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<NormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let d = s.gamma.layout().shape().num_elements();
        let (dx, dgamma, dbeta) = norm::backward(
            d,
            &values(&s.x),
            &values(&s.gamma),
            &s.mean,
            &s.rstd,
            &values(&dy),
        );
        let [x, gamma, beta] = ops.parents;
        register(
            grads,
            [
                (x.map(|n| n.id), dx, s.x.layout().shape().to_vec()),
                (gamma.map(|n| n.id), dgamma, vec![d]),
                (beta.map(|n| n.id), dbeta, vec![d]),
            ],
        );
    }
}

/// What a linear layer's backward pass keeps: x and the weight.
#[derive(Clone, Debug)]
struct LinearState {
    x: FlexTensor,
    weight: FlexTensor,
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<LinearState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<Flex>(&ops.node);
        let dy = values(&dy);
        let s = ops.state;
        let (d, _) = linear_dims(&s.x, &s.weight);
        let [x, weight, bias] = ops.parents;
        if let Some(node) = x {
            let dx = dense::input_grad(d, &values(&s.weight), &dy);
            grads.register::<Flex>(node.id, tensor(dx, s.x.layout().shape()));
        }
        if let Some(node) = weight {
            let dw = dense::weight_grad(d, &values(&s.x), &dy);
            grads.register::<Flex>(node.id, tensor(dw, &[d.inputs, d.outputs]));
        }
        if let Some(node) = bias {
            grads.register::<Flex>(node.id, tensor(dense::bias_grad(d, &dy), &[d.outputs]));
        }
    }
}

/// What cross-entropy's backward pass keeps: the sizes, every row's softmax, the targets.
#[derive(Clone, Debug)]
struct LossState {
    dims: loss::Dims,
    probs: std::sync::Arc<Vec<f32>>,
    targets: std::sync::Arc<Vec<i64>>,
}

#[derive(Debug)]
struct LossBackward;

impl Backward<Flex, 1> for LossBackward {
    type State = LossState;

    fn backward(self, ops: Ops<LossState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = values(&grads.consume::<Flex>(&ops.node))[0];
        let s = ops.state;
        let dx = loss::backward(s.dims, &s.probs, &s.targets, grad);
        let [logits] = ops.parents;
        let shape = vec![s.dims.rows, s.dims.classes];
        register(grads, [(logits.map(|n| n.id), dx, shape)]);
    }
}

/// What attention's backward pass keeps: the inputs, the mask and P.
#[derive(Clone, Debug)]
struct AttentionState {
    dims: core::Dims,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    mask: std::sync::Arc<Vec<bool>>,
    p: std::sync::Arc<Vec<f32>>,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<AttentionState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dout = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let g = core::backward(
            s.dims,
            &values(&s.q),
            &values(&s.k),
            &values(&s.v),
            &s.mask,
            &s.p,
            &values(&dout),
        );
        let [q, k, v] = ops.parents;
        register(
            grads,
            [
                (q.map(|n| n.id), g.q, s.q.layout().shape().to_vec()),
                (k.map(|n| n.id), g.k, s.k.layout().shape().to_vec()),
                (v.map(|n| n.id), g.v, s.v.layout().shape().to_vec()),
            ],
        );
    }
}

/// What the LSTM's backward pass keeps from its forward pass.
#[derive(Clone, Debug)]
struct LstmState {
    dims: Dims,
    u: FlexTensor,
    h0: FlexTensor,
    c0: FlexTensor,
    out: FlexTensor,
    saved: std::sync::Arc<lstm::Saved>,
}

#[derive(Debug)]
struct LstmBackward;

impl Backward<Flex, 5> for LstmBackward {
    type State = LstmState;

    fn backward(self, ops: Ops<LstmState, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dout = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let d = s.dims;
        let g = lstm::backward(
            d,
            &values(&s.u),
            &values(&s.h0),
            &values(&s.c0),
            &values(&s.out),
            &s.saved,
            &values(&dout),
        );
        let [xp, u, bu, h0, c0] = ops.parents;
        let h = d.hidden;
        register(
            grads,
            [
                (xp.map(|n| n.id), g.xp, vec![d.batch, d.len, 4 * h]),
                (u.map(|n| n.id), g.u, vec![h, 4 * h]),
                (bu.map(|n| n.id), g.bu, vec![4 * h]),
                (h0.map(|n| n.id), g.h0, vec![d.batch, h]),
                (c0.map(|n| n.id), g.c0, vec![d.batch, h]),
            ],
        );
    }
}

/// What the GRU's backward pass keeps from its forward pass.
#[derive(Clone, Debug)]
struct GruState {
    dims: Dims,
    u: FlexTensor,
    h0: FlexTensor,
    hs: FlexTensor,
    saved: std::sync::Arc<Saved>,
}

#[derive(Debug)]
struct GruBackward;

impl Backward<Flex, 4> for GruBackward {
    type State = GruState;

    fn backward(self, ops: Ops<GruState, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dhs = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let d = s.dims;
        let g = gru::backward(
            d,
            &values(&s.u),
            &values(&s.h0),
            &values(&s.hs),
            &s.saved,
            &values(&dhs),
        );
        let [xp, u, bu, h0] = ops.parents;
        let h = d.hidden;
        register(
            grads,
            [
                (xp.map(|n| n.id), g.xp, vec![d.batch, d.len, 3 * h]),
                (u.map(|n| n.id), g.u, vec![h, 3 * h]),
                (bu.map(|n| n.id), g.bu, vec![3 * h]),
                (h0.map(|n| n.id), g.h0, vec![d.batch, h]),
            ],
        );
    }
}

impl<C: CheckpointStrategy> FusedBackend for Autodiff<Flex, C> {
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), weight.node(), bias.node()];
        let out = linear_forward(x.primitive(), weight.primitive(), bias.primitive());
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = LinearState {
                    x: x.primitive().clone(),
                    weight: weight.primitive().clone(),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn cross_entropy(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
        pad: i64,
        smoothing: f32,
    ) -> FloatTensor<Self> {
        let d = loss_dims(logits.primitive(), pad, smoothing);
        let targets = ints(&targets);
        let (value, probs) = loss::forward(d, &values(logits.primitive()), &targets);
        let out = tensor(vec![value], &[1]);
        match LossBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = LossState {
                    dims: d,
                    probs: std::sync::Arc::new(probs),
                    targets: std::sync::Arc::new(targets),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        heads: usize,
        fill: f32,
    ) -> FloatTensor<Self> {
        let nodes = [q.node(), k.node(), v.node()];
        let inputs = [q.primitive(), k.primitive(), v.primitive()];
        let mask = flags(&mask);
        let (out, p, dims) = attention_forward(inputs, &mask, heads, fill);
        match AttentionBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = AttentionState {
                    dims,
                    q: inputs[0].clone(),
                    k: inputs[1].clone(),
                    v: inputs[2].clone(),
                    mask: std::sync::Arc::new(mask),
                    p: std::sync::Arc::new(p),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn gru_sequence(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bu: FloatTensor<Self>,
        h0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match GruBackward
            .prepare::<C>([xp.node(), u.node(), bu.node(), h0.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (hs, saved) = gru_forward(
                    xp.primitive(),
                    u.primitive(),
                    bu.primitive(),
                    h0.primitive(),
                );
                let state = GruState {
                    dims: dims(xp.primitive(), u.primitive(), 3),
                    u: u.primitive().clone(),
                    h0: h0.primitive().clone(),
                    hs: hs.clone(),
                    saved: std::sync::Arc::new(saved),
                };
                prep.finish(state, hs)
            }
            OpsKind::UnTracked(prep) => {
                let hs = gru_forward(
                    xp.primitive(),
                    u.primitive(),
                    bu.primitive(),
                    h0.primitive(),
                )
                .0;
                prep.finish(hs)
            }
        }
    }

    fn lstm_sequence(
        xp: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bu: FloatTensor<Self>,
        h0: FloatTensor<Self>,
        c0: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [xp.node(), u.node(), bu.node(), h0.node(), c0.node()];
        let inputs = [
            xp.primitive(),
            u.primitive(),
            bu.primitive(),
            h0.primitive(),
            c0.primitive(),
        ];
        match LstmBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, saved) = lstm_forward(inputs);
                let state = LstmState {
                    dims: dims(inputs[0], inputs[1], 4),
                    u: inputs[1].clone(),
                    h0: inputs[3].clone(),
                    c0: inputs[4].clone(),
                    out: out.clone(),
                    saved: std::sync::Arc::new(saved),
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(lstm_forward(inputs).0),
        }
    }

    fn gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = x.primitive().clone();
                let y = map(&input, math::gelu);
                prep.finish(input, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(map(x.primitive(), math::gelu)),
        }
    }

    fn rope(x: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        let (y, d) = rope_forward(x.primitive(), heads);
        match RopeBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(d, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (y, mean, rstd) =
            layer_norm_forward(x.primitive(), gamma.primitive(), beta.primitive());
        match NormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = NormState {
                    x: x.primitive().clone(),
                    gamma: gamma.primitive().clone(),
                    mean: std::sync::Arc::new(mean),
                    rstd: std::sync::Arc::new(rstd),
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

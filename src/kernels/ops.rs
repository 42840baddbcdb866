//! The fused kernels as burn tensor operations: a backend extension implemented for burn-flex
//! (forward) and for autodiff over burn-flex (forward, plus a hand-written backward pass).
//! Other backends never reach these: callers check [`super::available`] first and use the
//! composed path otherwise.

use super::gru::{self, Dims, Saved};
use super::lstm;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
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
}

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

fn gru_dims(xp: &FlexTensor, u: &FlexTensor) -> Dims {
    dims(xp, u, 3)
}

fn gru_forward(
    xp: &FlexTensor,
    u: &FlexTensor,
    bu: &FlexTensor,
    h0: &FlexTensor,
) -> (FlexTensor, Saved) {
    let d = gru_dims(xp, u);
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

impl FusedBackend for Flex {
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
        for (node, grad, shape) in [
            (xp, g.xp, vec![d.batch, d.len, 4 * h]),
            (u, g.u, vec![h, 4 * h]),
            (bu, g.bu, vec![4 * h]),
            (h0, g.h0, vec![d.batch, h]),
            (c0, g.c0, vec![d.batch, h]),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(grad, &shape));
            }
        }
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
        for (node, grad, shape) in [
            (xp, g.xp, vec![d.batch, d.len, 3 * h]),
            (u, g.u, vec![h, 3 * h]),
            (bu, g.bu, vec![3 * h]),
            (h0, g.h0, vec![d.batch, h]),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(grad, &shape));
            }
        }
    }
}

impl<C: CheckpointStrategy> FusedBackend for Autodiff<Flex, C> {
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
                    dims: gru_dims(xp.primitive(), u.primitive()),
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
}

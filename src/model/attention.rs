//! burn's Transformer layers replayed one sub-layer at a time, with the same parameters,
//! so that attention can see positions the way `rope` and `alibi` need (inside the scores,
//! which burn's `MultiHeadAttention` does not open) and so that `runner explain` can keep
//! each layer's attention weights. The order of operations, dropout included, follows
//! `TransformerEncoderLayer::forward` and `TransformerDecoderLayer::forward` of burn 0.22.1;
//! tests check that the replay without a relative scheme gives burn's own outputs. On the
//! CPU backend the models train through the replay with every scheme, since it runs layer
//! norm and GELU as fused kernels (crates/kernels/src/) where burn's layers compose them.

use crate::kernels;
use crate::spec::PosEncoding;
use burn::nn::activation::Activation;
use burn::nn::attention::MultiHeadAttention;
use burn::nn::transformer::{
    PositionWiseFeedForward, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer,
};
use burn::nn::{LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::{quiet_softmax, softmax};
use burn::tensor::DType;

/// A position scheme applied inside self-attention rather than added to the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relative {
    Rope,
    Alibi,
}

impl Relative {
    pub fn of(scheme: PosEncoding) -> Option<Self> {
        match scheme {
            PosEncoding::Rope => Some(Relative::Rope),
            PosEncoding::Alibi => Some(Relative::Alibi),
            _ => None,
        }
    }
}

/// Masks of one attention call: padded keys [batch, keys] and disallowed pairs
/// [batch, queries, keys] (true = masked).
#[derive(Clone, Default)]
pub struct Masks {
    pub pad: Option<Tensor<2, Bool>>,
    pub attn: Option<Tensor<3, Bool>>,
}

/// Attention of queries from `x` over keys and values from `memory` with the scheme
/// applied to queries and keys (rope) or scores (alibi): the context [batch, len, d_model]
/// and the weights [batch, heads, len, len]. A relative scheme only makes sense when both
/// are one sequence, so cross-attention passes `None`.
fn attend(
    mha: &MultiHeadAttention,
    x: Tensor<3>,
    memory: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
) -> (Tensor<3>, Tensor<4>) {
    let [batch, len, d_model] = x.dims();
    let mut q = heads(mha, x, &mha.query);
    let mut k = heads(mha, memory.clone(), &mha.key);
    let v = heads(mha, memory, &mha.value);
    if relative == Some(Relative::Rope) {
        q = rope(q);
        k = rope(k);
    }
    let mut scores = q.matmul(k.transpose()).div_scalar((mha.d_k as f32).sqrt());
    if relative == Some(Relative::Alibi) {
        let bias = alibi(mha.n_heads, len, &scores.device());
        scores = scores + bias;
    }
    if let Some(pad) = &masks.pad {
        let [b, keys] = pad.dims();
        scores = scores.mask_fill(pad.clone().reshape([b, 1, 1, keys]), mha.min_float);
    }
    if let Some(attn) = &masks.attn {
        let [b, queries, keys] = attn.dims();
        scores = scores.mask_fill(attn.clone().reshape([b, 1, queries, keys]), mha.min_float);
    }
    let weights = if mha.quiet_softmax {
        quiet_softmax(scores, 3)
    } else {
        softmax(scores, 3)
    };
    let weights = mha.dropout.forward(weights);
    let context = weights
        .clone()
        .matmul(v)
        .swap_dims(1, 2)
        .reshape([batch, len, d_model]);
    (linear(&mha.output, context), weights)
}

/// What a layer hands back besides its output: each attention's weights (for `runner
/// explain`), or nothing, which lets the CPU backend run the attention core as one fused
/// kernel that never forms the weights as a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Weights,
    Output,
}

/// [`attend`], or the fused kernel when the weights are not wanted and it computes the
/// same thing: on the CPU backend, without ALiBi (a bias the kernel does not add), weight
/// dropout or quiet softmax.
fn attend_keeping(
    mha: &MultiHeadAttention,
    x: Tensor<3>,
    memory: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
    keep: Keep,
) -> (Tensor<3>, Option<Tensor<4>>) {
    let fusable = keep == Keep::Output
        && kernels::available(&x.device())
        && relative != Some(Relative::Alibi)
        && mha.dropout.prob == 0.0
        && !mha.quiet_softmax
        && x.dtype() == DType::F32;
    if fusable {
        return (fused_attention(mha, x, memory, masks, relative), None);
    }
    let (context, weights) = attend(mha, x, memory, masks, relative);
    (context, Some(weights))
}

fn fused_attention(
    mha: &MultiHeadAttention,
    x: Tensor<3>,
    memory: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
) -> Tensor<3> {
    let [batch, queries, _] = x.dims();
    let keys = memory.dims()[1];
    let mut q = linear(&mha.query, x);
    let mut k = linear(&mha.key, memory.clone());
    let v = linear(&mha.value, memory);
    if relative == Some(Relative::Rope) {
        q = kernels::rope(q, mha.n_heads);
        k = kernels::rope(k, mha.n_heads);
    }
    let mask = masks.combined(batch, queries, keys, &v.device());
    let context = kernels::attention(q, k, v, mask, mha.n_heads, mha.min_float as f32);
    linear(&mha.output, context)
}

impl Masks {
    /// Both masks as one [batch, queries, keys] (true = masked).
    fn combined(
        &self,
        batch: usize,
        queries: usize,
        keys: usize,
        device: &Device,
    ) -> Tensor<3, Bool> {
        let shape = [batch, queries, keys];
        let pad = self
            .pad
            .clone()
            .map(|p| p.reshape([batch, 1, keys]).expand(shape));
        match (pad, self.attn.clone()) {
            (Some(pad), Some(attn)) => pad.bool_or(attn),
            (Some(mask), None) | (None, Some(mask)) => mask,
            (None, None) => Tensor::from_data(
                TensorData::new(vec![false; batch * queries * keys], shape),
                device,
            ),
        }
    }
}

/// [batch, len, d_model] -> [batch, heads, len, d_k] through one projection.
fn heads(mha: &MultiHeadAttention, x: Tensor<3>, projection: &Linear) -> Tensor<4> {
    let [batch, len, _] = x.dims();
    linear(projection, x)
        .reshape([batch, len, mha.n_heads, mha.d_k])
        .swap_dims(1, 2)
}

/// Rotates each pair (x_i, x_{i + d/2}) of [batch, heads, len, d_k] by position × θ_i,
/// θ_i = 10000^(−2i/d_k) (the half-split pairing of GPT-NeoX and LLaMA; the fused kernel,
/// `kernels::rope`, computes the same from the same angles). Computed for the
/// length at hand: there is no table to outgrow. An odd d_k leaves its last unit as is.
fn rope(x: Tensor<4>) -> Tensor<4> {
    let [batch, n_heads, len, d_k] = x.dims();
    let half = d_k / 2;
    if half == 0 {
        return x;
    }
    let device = x.device();
    let (cos, sin) = rope_angles(len, half, &device); // [1, 1, len, half]
    let x1 = x.clone().slice([0..batch, 0..n_heads, 0..len, 0..half]);
    let x2 = x
        .clone()
        .slice([0..batch, 0..n_heads, 0..len, half..2 * half]);
    let mut parts = vec![
        x1.clone() * cos.clone() - x2.clone() * sin.clone(),
        x2 * cos + x1 * sin,
    ];
    if d_k % 2 == 1 {
        parts.push(x.slice([0..batch, 0..n_heads, 0..len, d_k - 1..d_k]));
    }
    Tensor::cat(parts, 3)
}

fn rope_angles(len: usize, half: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let (cos, sin) = kernels::rope::angles(len, half);
    let table = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, len, half]), device);
    (table(cos), table(sin))
}

/// ALiBi's bias [1, heads, len, len]: −slope_h · |i − j|, so that a head attends less to
/// farther tokens at a rate of its own. Symmetric, so one form serves causal models (the
/// mask removes j > i) and bidirectional ones.
fn alibi(n_heads: usize, len: usize, device: &Device) -> Tensor<4> {
    let slopes = alibi_slopes(n_heads);
    let mut bias = Vec::with_capacity(n_heads * len * len);
    for slope in &slopes {
        for i in 0..len {
            for j in 0..len {
                bias.push(-(slope * i.abs_diff(j) as f64) as f32);
            }
        }
    }
    Tensor::from_data(TensorData::new(bias, [1, n_heads, len, len]), device)
}

/// The paper's slopes: for n a power of two, 2^(−8h/n) for h = 1..n; otherwise those of the
/// nearest lower power of two, then every other slope of the next power (its reference code).
pub fn alibi_slopes(n_heads: usize) -> Vec<f64> {
    fn power_of_two(n: usize) -> Vec<f64> {
        (1..=n)
            .map(|h| 2f64.powf(-8.0 * h as f64 / n as f64))
            .collect()
    }
    if n_heads.is_power_of_two() {
        return power_of_two(n_heads);
    }
    let lower = 1 << n_heads.ilog2();
    let mut slopes = power_of_two(lower);
    slopes.extend(
        power_of_two(2 * lower)
            .into_iter()
            .step_by(2)
            .take(n_heads - lower),
    );
    slopes
}

/// `norm.forward(x)`, through the fused kernel on the CPU backend.
pub fn norm(norm: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
    if !kernels::available(&x.device()) || norm.gamma.val().dtype() != DType::F32 {
        return norm.forward(x);
    }
    let gamma = norm.gamma.val();
    let beta = match &norm.beta {
        Some(b) => b.val(),
        None => gamma.zeros_like(),
    };
    kernels::layer_norm(x, gamma, beta)
}

/// `layer.forward(x)`, through the fused kernel on the CPU backend (f32 weights with a
/// bias; a quantised weight keeps burn's path, which reads it packed).
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let weight = layer.weight.val();
    match &layer.bias {
        Some(bias)
            if kernels::available(&x.device())
                && weight.dtype() == DType::F32
                && x.dtype() == DType::F32 =>
        {
            kernels::linear(x, weight, bias.val())
        }
        _ => layer.forward(x),
    }
}

/// `pwff.forward(x)` (`PositionWiseFeedForward::forward`'s order), with its linear layers
/// and GELU through the fused kernels on the CPU backend.
fn feed_forward(pwff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    if !kernels::available(&x.device()) {
        return pwff.forward(x);
    }
    let x = linear(&pwff.linear_inner, x);
    let x = match pwff.activation {
        Activation::Gelu(_) => kernels::gelu(x),
        _ => pwff.activation.forward(x),
    };
    linear(&pwff.linear_outer, pwff.dropout.forward(x))
}

/// Whether the models run their layers through this file even without a relative scheme:
/// on the CPU backend, where the replay uses the fused kernels.
pub fn replay(device: &Device) -> bool {
    kernels::available(device)
}

/// One encoder layer (`TransformerEncoderLayer::forward`'s order): the output and the
/// self-attention weights.
pub fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
) -> (Tensor<3>, Tensor<4>) {
    let (x, weights) = encoder_layer_keeping(layer, x, masks, relative, Keep::Weights);
    (x, weights.expect("weights were asked for"))
}

fn encoder_layer_keeping(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
    keep: Keep,
) -> (Tensor<3>, Option<Tensor<4>>) {
    let normed = if layer.norm_first {
        norm(&layer.norm_2, x.clone())
    } else {
        x.clone()
    };
    let (context, weights) =
        attend_keeping(&layer.mha, normed.clone(), normed, masks, relative, keep);
    let mut x = x + layer.dropout.forward(context);
    let r = if layer.norm_first {
        norm(&layer.norm_1, x.clone())
    } else {
        x = norm(&layer.norm_1, x);
        x.clone()
    };
    let mut x = x + layer.dropout.forward(feed_forward(&layer.pwff, r));
    if !layer.norm_first {
        x = norm(&layer.norm_2, x);
    }
    (x, weights)
}

/// Every layer's output and self-attention weights, first layer first.
pub type Layers = Vec<(Tensor<3>, Tensor<4>)>;

/// An encoder stack one layer at a time; the last output is the stack's.
pub fn encoder(
    encoder: &TransformerEncoder,
    mut x: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
) -> Layers {
    let mut layers = Vec::with_capacity(encoder.layers.len());
    for layer in &encoder.layers {
        let (out, weights) = encoder_layer(layer, x, masks, relative);
        x = out.clone();
        layers.push((out, weights));
    }
    layers
}

/// The last layer's output of [`encoder`] (`x` itself for an empty stack).
pub fn encode(
    blocks: &TransformerEncoder,
    x: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
) -> Tensor<3> {
    blocks.layers.iter().fold(x, |x, layer| {
        encoder_layer_keeping(layer, x, masks, relative, Keep::Output).0
    })
}

/// One decoder layer (`TransformerDecoderLayer::forward`'s order): causal self-attention
/// with the scheme, cross-attention over `memory` without it (a decoder position and an
/// encoder position share no axis). Returns the output and the cross-attention weights.
pub fn decoder_layer(
    layer: &TransformerDecoderLayer,
    x: Tensor<3>,
    memory: &Tensor<3>,
    target: &Masks,
    source: &Masks,
    relative: Option<Relative>,
) -> (Tensor<3>, Tensor<4>) {
    let (x, cross) =
        decoder_layer_keeping(layer, x, memory, [target, source], relative, Keep::Weights);
    (x, cross.expect("weights were asked for"))
}

/// [`decoder_layer`]'s output alone.
pub fn decode_layer(
    layer: &TransformerDecoderLayer,
    x: Tensor<3>,
    memory: &Tensor<3>,
    target: &Masks,
    source: &Masks,
    relative: Option<Relative>,
) -> Tensor<3> {
    decoder_layer_keeping(layer, x, memory, [target, source], relative, Keep::Output).0
}

fn decoder_layer_keeping(
    layer: &TransformerDecoderLayer,
    x: Tensor<3>,
    memory: &Tensor<3>,
    [target, source]: [&Masks; 2],
    relative: Option<Relative>,
    keep: Keep,
) -> (Tensor<3>, Option<Tensor<4>>) {
    let pre = layer.norm_first;
    let r = if pre {
        norm(&layer.norm_3, x.clone())
    } else {
        x.clone()
    };
    // The self-attention weights are never returned: always fusable.
    let (context, _) = attend_keeping(
        &layer.self_attn,
        r.clone(),
        r,
        target,
        relative,
        Keep::Output,
    );
    let mut x = x + layer.dropout.forward(context);
    let r = if pre {
        norm(&layer.norm_1, x.clone())
    } else {
        x = norm(&layer.norm_1, x);
        x.clone()
    };
    let (context, cross) = attend_keeping(&layer.cross_attn, r, memory.clone(), source, None, keep);
    let mut x = x + layer.dropout.forward(context);
    let r = if pre {
        norm(&layer.norm_2, x.clone())
    } else {
        x = norm(&layer.norm_2, x);
        x.clone()
    };
    let mut x = x + layer.dropout.forward(feed_forward(&layer.pwff, r));
    if !pre {
        x = norm(&layer.norm_3, x);
    }
    (x, cross)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::attention::{generate_autoregressive_mask, MhaInput};
    use burn::nn::transformer::{
        TransformerDecoderConfig, TransformerDecoderInput, TransformerEncoderConfig,
        TransformerEncoderInput,
    };
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    fn input(batch: usize, len: usize, device: &Device) -> Tensor<3> {
        Tensor::random([batch, len, 8], Distribution::Normal(0.0, 1.0), device)
    }

    /// Values and gradients (of the input and every parameter) of `ours` and burn's `theirs`
    /// under Σ w ⊙ out, on the autodiff CPU device, where `ours` runs the fused kernels.
    fn same_values_and_gradients<M: Module>(
        module: &M,
        ours: impl Fn(&M, Tensor<3>) -> Tensor<3>,
        theirs: impl Fn(&M, Tensor<3>) -> Tensor<3>,
        params: impl Fn(&M, &burn::tensor::Gradients) -> Vec<Tensor<1>>,
    ) {
        let device = Device::flex().autodiff();
        let x = Tensor::random([3, 5, 8], Distribution::Normal(0.5, 2.0), &device);
        let w = Tensor::random([3, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let mut results = Vec::new();
        for run in [&ours as &dyn Fn(&M, Tensor<3>) -> Tensor<3>, &theirs] {
            let x = x.clone().require_grad();
            let out = run(module, x.clone());
            let grads = (out.clone() * w.clone()).sum().backward();
            let mut all = vec![x.grad(&grads).unwrap().flatten(0, 2)];
            all.extend(params(module, &grads));
            results.push((out, all));
        }
        let (theirs, ours) = (results.pop().unwrap(), results.pop().unwrap());
        let diff = max_diff(ours.0, theirs.0);
        assert!(diff < 1e-5, "outputs differ by {diff}");
        for (i, (a, b)) in ours.1.into_iter().zip(theirs.1).enumerate() {
            let scale = b.clone().abs().max().into_scalar::<f32>().max(1.0);
            let err = max_diff(a, b) / scale;
            assert!(err < 1e-4, "gradient {i} differs: relative {err:e}");
        }
    }

    #[test]
    fn fused_layer_norm_and_gelu_match_burns_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        let norm_layer = burn::nn::LayerNormConfig::new(8).init(&device);
        same_values_and_gradients(
            &norm_layer,
            norm,
            |m, x| m.forward(x),
            |m, g| {
                vec![
                    m.gamma.grad(g).unwrap(),
                    m.beta.as_ref().unwrap().grad(g).unwrap(),
                ]
            },
        );
        let pwff = burn::nn::transformer::PositionWiseFeedForwardConfig::new(8, 16)
            .with_dropout(0.0)
            .init(&device);
        same_values_and_gradients(
            &pwff,
            feed_forward,
            |m, x| m.forward(x),
            |m, g| {
                let inner = &m.linear_inner;
                vec![
                    inner.weight.grad(g).unwrap().flatten(0, 1),
                    inner.bias.as_ref().unwrap().grad(g).unwrap(),
                ]
            },
        );
    }

    #[test]
    fn fused_attention_matches_the_composed_one_in_values_and_gradients() {
        let device = Device::flex().autodiff();
        let mha = burn::nn::attention::MultiHeadAttentionConfig::new(8, 2)
            .with_dropout(0.0)
            .init(&device);
        // Batch row 1 has its last two keys padded; row 2 every key (it attends uniformly).
        let pad: Vec<bool> = (0..3)
            .flat_map(|b| (0..5).map(move |j| (b == 1 && j >= 3) || b == 2))
            .collect();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(pad, [3, 5]), &device);
        let causal = generate_autoregressive_mask(3, 5, &device);
        let cases = [
            (None, None),
            (Some(pad.clone()), None),
            (None, Some(causal.clone())),
            (Some(pad), Some(causal)),
        ];
        let memory = Tensor::<3>::random([3, 5, 8], Distribution::Normal(0.0, 1.0), &device);
        let params = |m: &MultiHeadAttention, g: &burn::tensor::Gradients| {
            [&m.query, &m.key, &m.value, &m.output]
                .iter()
                .map(|l| l.weight.grad(g).unwrap().flatten(0, 1))
                .collect()
        };
        for (pad, attn) in cases {
            let masks = Masks { pad, attn };
            for relative in [None, Some(Relative::Rope)] {
                same_values_and_gradients(
                    &mha,
                    |m, x| attend_keeping(m, x.clone(), x, &masks, relative, Keep::Output).0,
                    |m, x| attend(m, x.clone(), x, &masks, relative).0,
                    params,
                );
            }
            // Cross-attention: keys and values from another sequence.
            let memory = &memory;
            same_values_and_gradients(
                &mha,
                |m, x| attend_keeping(m, x, memory.clone(), &masks, None, Keep::Output).0,
                |m, x| attend(m, x, memory.clone(), &masks, None).0,
                params,
            );
        }
        // The fused path was the one taken.
        let x = input(3, 5, &device);
        let (_, weights) =
            attend_keeping(&mha, x.clone(), x, &Masks::default(), None, Keep::Output);
        assert!(weights.is_none());
    }

    #[test]
    fn without_a_scheme_the_replay_is_burns_encoder_and_decoder() {
        let device = Device::flex();
        for norm_first in [true, false] {
            // No dropout: the replay then runs the fused attention kernel (inference would
            // skip dropout anyway, but the kernel is only chosen when it cannot apply).
            let enc = TransformerEncoderConfig::new(8, 16, 2, 2)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .init(&device);
            let x = input(3, 5, &device);
            let mask = generate_autoregressive_mask(3, 5, &device);
            let masks = Masks {
                pad: None,
                attn: Some(mask.clone()),
            };
            let theirs = enc.forward(TransformerEncoderInput::new(x.clone()).mask_attn(mask));
            assert!(max_diff(encode(&enc, x.clone(), &masks, None), theirs) < 1e-5);

            let dec = TransformerDecoderConfig::new(8, 16, 2, 1)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .init(&device);
            let memory = input(3, 4, &device);
            let causal = generate_autoregressive_mask(3, 5, &device);
            let theirs = dec.forward(
                TransformerDecoderInput::new(x.clone(), memory.clone())
                    .target_mask_attn(causal.clone()),
            );
            let target = Masks {
                pad: None,
                attn: Some(causal),
            };
            let (ours, cross) =
                decoder_layer(&dec.layers[0], x, &memory, &target, &Masks::default(), None);
            assert!(max_diff(ours, theirs) < 1e-5);
            assert_eq!(cross.dims(), [3, 2, 5, 4]);
        }
    }

    #[test]
    fn rope_scores_depend_only_on_offsets() {
        let device = Device::flex();
        // The same query and key vector at every position: a score then depends on the
        // offset alone, so each diagonal of the score matrix is constant.
        let v = Tensor::<4>::random([1, 1, 1, 6], Distribution::Normal(0.0, 1.0), &device);
        let x = v.repeat_dim(2, 9);
        let q = rope(x.clone());
        let scores: Vec<f32> = q.matmul(rope(x).transpose()).to_data().iter().collect();
        for offset in 0..9 {
            let diagonal: Vec<f32> = (offset..9).map(|i| scores[i * 9 + i - offset]).collect();
            for s in &diagonal {
                assert!(
                    (s - diagonal[0]).abs() < 1e-4,
                    "offset {offset}: {diagonal:?}"
                );
            }
        }
        // And rotation keeps lengths.
        let norm = |t: Tensor<4>| -> f32 { t.powf_scalar(2.0).sum().into_scalar() };
        let x = Tensor::<4>::random([2, 2, 7, 5], Distribution::Normal(0.0, 1.0), &device);
        assert!((norm(rope(x.clone())) - norm(x)).abs() < 1e-3);
    }

    #[test]
    fn alibi_slopes_follow_the_paper() {
        let s = alibi_slopes(8);
        assert!((s[0] - 0.5).abs() < 1e-12 && (s[7] - 1.0 / 256.0).abs() < 1e-12);
        let s = alibi_slopes(6);
        assert_eq!(s.len(), 6);
        // Four of 2^(-8h/4), then 2^(-8h/8) for h = 1, 3.
        assert!((s[3] - 2f64.powi(-8)).abs() < 1e-12);
        assert!((s[4] - 2f64.powf(-1.0)).abs() < 1e-12);
        assert!((s[5] - 2f64.powf(-3.0)).abs() < 1e-12);
    }

    #[test]
    fn alibi_attends_less_to_farther_keys_given_equal_scores() {
        let device = Device::flex();
        let mha = burn::nn::attention::MultiHeadAttentionConfig::new(8, 2).init(&device);
        // Identical tokens give identical raw scores: only the bias orders the weights.
        let x = input(1, 1, &device).repeat_dim(1, 6);
        let (_, weights) = attend(
            &mha,
            x.clone(),
            x.clone(),
            &Masks::default(),
            Some(Relative::Alibi),
        );
        let w: Vec<f32> = weights.to_data().iter().collect();
        for head in 0..2 {
            let row = &w[head * 36 + 5 * 6..head * 36 + 6 * 6]; // query 5
            assert!(row.windows(2).all(|p| p[0] < p[1]), "{row:?}");
        }
        let (_, plain) = attend(&mha, x.clone(), x.clone(), &Masks::default(), None);
        let theirs = mha.forward(MhaInput::self_attn(x)).weights;
        assert!(max_diff(plain, theirs) < 1e-6);
    }
}

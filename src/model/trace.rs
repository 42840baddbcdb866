//! What `runner explain` reads inside a model on one record: every attention map, the
//! hidden state (recurrent) or residual stream (attention) of each layer at each position,
//! a recurrent layer's gate, and the logits. The attention models' layers are replayed one
//! at a time with the weights kept; the logits come out of the same replay, and a test
//! checks that they equal `forward`'s, so the maps are the ones the model used.
//! Evaluation only (no dropout), one record (batch 1).

use super::attention::{self, Masks, Relative};
use super::recurrent::{Cell, RecurrentLm};
use super::{Ber, Gpt, Model, Stack, Tra};
use crate::data::batcher::Batch;
use crate::data::vocab::PAD;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::transformer::TransformerEncoder;
use burn::prelude::*;

/// Which sequence a map's axis or a layer's positions run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The batch's `tokens` (the whole record, or the decoder's input for tra).
    Tokens,
    /// The encoder's input (tra only).
    Source,
}

/// One attention layer's weights: [head][query][key].
#[derive(Debug, Clone)]
pub struct AttentionMap {
    pub name: String,
    pub queries: Side,
    pub keys: Side,
    pub weights: Vec<Vec<Vec<f32>>>,
}

/// One layer's values at each position: [position][unit].
#[derive(Debug, Clone)]
pub struct LayerValues {
    pub name: String,
    pub side: Side,
    pub values: Vec<Vec<f32>>,
    /// Names of the units when they have one (the stack's actions); empty otherwise.
    pub units: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Trace {
    pub attention: Vec<AttentionMap>,
    /// Hidden states or residual streams, first layer first; the last is what the head reads
    /// (before the final norm of attention models).
    pub states: Vec<LayerValues>,
    /// Recurrent models: each layer's gate (`Cell::GATE`).
    pub gates: Vec<LayerValues>,
    /// [position][token] over the batch's tokens, as `forward` gives them.
    pub logits: Vec<Vec<f32>>,
}

impl Model {
    /// The trace of the first record of `batch` (batch 1). None for the text GPT.
    pub fn trace(&self, batch: &Batch) -> Option<Trace> {
        let tokens = batch.tokens.clone();
        Some(match self {
            Model::Gru(m) => recurrent(m, tokens),
            Model::Lstm(m) => recurrent(m, tokens),
            Model::Gpt(m) => gpt(m, tokens),
            Model::Ber(m) => ber(m, tokens),
            Model::Tra(m) => tra(m, batch.source.clone()?, tokens),
            Model::Stack(m) => stack(m, tokens),
            Model::Gpt2(_) => return None,
        })
    }
}

/// The stack model: each lower GRU layer's state, the controller's, then the state with the
/// stack's top (what the head reads); its "gate" is the three soft actions.
fn stack(model: &Stack, tokens: Tensor<2, Int>) -> Trace {
    // The lower layers one at a time (what `Stack::below` does, without dropout), keeping
    // each one's states; the last output is the controller's input.
    let mut x = model.embed.forward(tokens);
    let mut states = Vec::new();
    for (i, layer) in model.lower.iter().enumerate() {
        x = super::recurrent::gru(layer, x, None).0;
        states.push(values(
            format!("layer {i}: hidden state"),
            Side::Tokens,
            x.clone(),
        ));
    }
    let run = model.controller.run(x, None);
    let top = model.lower.len();
    states.push(values(
        format!("layer {top}: controller state"),
        Side::Tokens,
        run.hidden.clone(),
    ));
    states.push(values(
        format!("layer {top}: controller state + stack top"),
        Side::Tokens,
        Tensor::cat(vec![run.hidden.clone(), run.top.clone()], 2),
    ));
    Trace {
        attention: Vec::new(),
        gates: vec![LayerValues {
            units: super::stack::ACTIONS.map(String::from).to_vec(),
            ..values(
                format!("layer {top}: stack actions"),
                Side::Tokens,
                run.actions.clone(),
            )
        }],
        states,
        logits: rows(model.logits(&run)),
    }
}

fn recurrent<C: Cell>(model: &RecurrentLm<C>, tokens: Tensor<2, Int>) -> Trace {
    let mut x = model.embed.forward(tokens); // [1, len, d_embed]
    let (mut states, mut gates) = (Vec::new(), Vec::new());
    for (i, layer) in model.layers.iter().enumerate() {
        let (out, _) = layer.run(x.clone(), None); // [1, len, d_hidden]
        let [b, len, d] = out.dims();
        // The state before each step: zeros, then the outputs shifted by one.
        let before = Tensor::cat(
            vec![
                Tensor::zeros([b, 1, d], &out.device()),
                out.clone().slice([0..b, 0..len - 1, 0..d]),
            ],
            1,
        );
        gates.push(values(
            format!("layer {i}: {}", C::GATE),
            Side::Tokens,
            layer.gate(x, before),
        ));
        states.push(values(
            format!("layer {i}: hidden state"),
            Side::Tokens,
            out.clone(),
        ));
        x = out;
    }
    Trace {
        attention: Vec::new(),
        states,
        gates,
        logits: rows(model.head.forward(x)),
    }
}

fn gpt(model: &Gpt, tokens: Tensor<2, Int>) -> Trace {
    let [batch, len] = tokens.dims();
    let masks = Masks {
        pad: None,
        attn: Some(generate_autoregressive_mask(batch, len, &tokens.device())),
    };
    let x = model.embed.forward(tokens);
    let relative = model.embed.relative();
    let (x, attention, states) = encoder(&model.blocks, x, &masks, relative, "layer");
    Trace {
        attention,
        states,
        gates: Vec::new(),
        logits: rows(model.head.forward(model.norm.forward(x))),
    }
}

fn ber(model: &Ber, tokens: Tensor<2, Int>) -> Trace {
    let masks = Masks {
        pad: Some(tokens.clone().equal_elem(PAD as i64)),
        attn: None,
    };
    let x = model.embed.forward(tokens);
    let relative = model.embed.relative();
    let (x, attention, states) = encoder(&model.encoder, x, &masks, relative, "layer");
    Trace {
        attention,
        states,
        gates: Vec::new(),
        logits: rows(model.head.forward(model.norm.forward(x))),
    }
}

fn tra(model: &Tra, source: Tensor<2, Int>, tokens: Tensor<2, Int>) -> Trace {
    let source_masks = Masks {
        pad: Some(source.clone().equal_elem(PAD as i64)),
        attn: None,
    };
    let x = model.source_embed.forward(source);
    let relative = model.source_embed.relative();
    let (memory, mut attention, mut states) =
        encoder(&model.encoder, x, &source_masks, relative, "encoder layer");
    for map in &mut attention {
        map.queries = Side::Source;
        map.keys = Side::Source;
    }
    for layer in &mut states {
        layer.side = Side::Source;
    }
    let [batch, len] = tokens.dims();
    let target_masks = Masks {
        pad: None,
        attn: Some(generate_autoregressive_mask(batch, len, &tokens.device())),
    };
    let mut x = model.target_embed.forward(tokens);
    for (i, layer) in model.decoder.layers.iter().enumerate() {
        let (out, cross) =
            attention::decoder_layer(layer, x, &memory, &target_masks, &source_masks, relative);
        attention.push(AttentionMap {
            name: format!("decoder layer {i}: cross-attention"),
            queries: Side::Tokens,
            keys: Side::Source,
            weights: heads(cross),
        });
        states.push(values(
            format!("decoder layer {i}"),
            Side::Tokens,
            out.clone(),
        ));
        x = out;
    }
    Trace {
        attention,
        states,
        gates: Vec::new(),
        logits: rows(model.head.forward(model.norm.forward(x))),
    }
}

type EncoderTrace = (Tensor<3>, Vec<AttentionMap>, Vec<LayerValues>);

/// An encoder stack one layer at a time through attention.rs's replay, which gives each
/// layer's self-attention weights beside its output.
fn encoder(
    encoder: &TransformerEncoder,
    x: Tensor<3>,
    masks: &Masks,
    relative: Option<Relative>,
    name: &str,
) -> EncoderTrace {
    let (mut maps, mut states) = (Vec::new(), Vec::new());
    let mut last = x.clone();
    for (i, (out, weights)) in attention::encoder(encoder, x, masks, relative)
        .into_iter()
        .enumerate()
    {
        maps.push(AttentionMap {
            name: format!("{name} {i}: self-attention"),
            queries: Side::Tokens,
            keys: Side::Tokens,
            weights: heads(weights),
        });
        states.push(values(format!("{name} {i}"), Side::Tokens, out.clone()));
        last = out;
    }
    (last, maps, states)
}

/// [1, heads, q, k] -> [head][q][k].
fn heads(weights: Tensor<4>) -> Vec<Vec<Vec<f32>>> {
    let [_, n_heads, q, k] = weights.dims();
    let flat: Vec<f32> = weights.to_data().iter::<f32>().collect();
    (0..n_heads)
        .map(|h| {
            (0..q)
                .map(|i| flat[(h * q + i) * k..(h * q + i + 1) * k].to_vec())
                .collect()
        })
        .collect()
}

fn values(name: String, side: Side, x: Tensor<3>) -> LayerValues {
    LayerValues {
        name,
        side,
        values: rows(x),
        units: Vec::new(),
    }
}

/// [1, len, d] -> [position][d].
fn rows(x: Tensor<3>) -> Vec<Vec<f32>> {
    let [_, len, d] = x.dims();
    let flat: Vec<f32> = x.to_data().iter::<f32>().collect();
    (0..len)
        .map(|t| flat[t * d..(t + 1) * d].to_vec())
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::data::batcher::make_batch;
    use crate::data::dataset;
    use crate::model::{layout, Model};
    use crate::spec::{Arch, PosEncoding, Spec};
    use burn::prelude::*;

    #[test]
    fn a_trace_gives_forwards_logits_and_attention_rows_sum_to_one() {
        let device = Device::flex();
        let schemes = [
            PosEncoding::Learned,
            PosEncoding::Rope,
            PosEncoding::Alibi,
            PosEncoding::None,
        ];
        for &arch in Arch::all() {
            for (norm_first, pos) in [true, false]
                .into_iter()
                .flat_map(|n| schemes.map(|p| (n, p)))
            {
                if arch.is_recurrent() && pos != PosEncoding::Learned {
                    continue;
                }
                let mut spec = Spec::default();
                spec.model.arch = arch;
                spec.model.pos_encoding = pos;
                (spec.model.d_embed, spec.model.d_hidden, spec.model.d_model) = (8, 8, 8);
                (spec.model.n_heads, spec.model.d_ff, spec.model.n_layers) = (2, 16, 2);
                spec.model.norm_first = norm_first;
                let vocab = dataset::vocab(&spec);
                let example = dataset::fresh(&spec, &vocab, 1, 3);
                let refs: Vec<_> = example.iter().collect();
                let batch = make_batch(&refs, &vocab, layout(&spec, &vocab), &device, None);
                let model = Model::init(&spec, vocab.size(), &device);
                let trace = model.trace(&batch).expect("a bracket model");
                let forward: Vec<f32> = model.forward(&batch).to_data().iter::<f32>().collect();
                let traced: Vec<f32> = trace.logits.concat();
                assert_eq!(forward.len(), traced.len(), "{}", arch.name());
                let diff = forward
                    .iter()
                    .zip(&traced)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    diff < 1e-5,
                    "{} norm_first {norm_first} {pos:?}: {diff}",
                    arch.name()
                );
                for map in &trace.attention {
                    for row in map.weights.iter().flatten() {
                        let sum: f32 = row.iter().sum();
                        assert!((sum - 1.0).abs() < 1e-4, "{}: {sum}", map.name);
                    }
                }
                let layers = match arch {
                    Arch::Stack => 1,
                    a if a.is_recurrent() => 2,
                    _ => 0,
                };
                assert_eq!(trace.gates.len(), layers, "{}", arch.name());
                assert!(!trace.states.is_empty());
            }
        }
    }
}

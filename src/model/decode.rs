//! Greedy decoding shared by the autoregressive models: prompts are grouped by length so
//! that each group is one batched prefill, then one single-token step per generated token
//! with the model's carried state (recurrent state, or a KV cache), never re-reading the
//! prompt.

use burn::prelude::*;
use std::collections::BTreeMap;

/// A model that can continue a batch of equal-length prompts one token at a time.
pub trait Incremental {
    type State;
    /// tokens [batch, len] -> logits of the last position [batch, vocab], and the state.
    fn prefill(&self, tokens: Tensor<2, Int>) -> (Tensor<2>, Self::State);
    /// tokens [batch, 1] -> logits [batch, vocab], and the new state.
    fn step(&self, tokens: Tensor<2, Int>, state: Self::State) -> (Tensor<2>, Self::State);
}

/// What the model wrote after a prompt: tokens before the end token, and whether it wrote
/// the end token within the allowed length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    pub tokens: Vec<u32>,
    pub ended: bool,
}

/// logits [batch, len, vocab] -> [batch, vocab] at the last position.
pub fn last_position(logits: Tensor<3>) -> Tensor<2> {
    let [batch, len, vocab] = logits.dims();
    logits
        .slice([0..batch, len - 1..len, 0..vocab])
        .squeeze_dim(1)
}

/// Largest batch decoded at once: bounds memory, and is already past the point where larger
/// batches pay off on a CPU.
pub(crate) const DECODE_BATCH: usize = 512;

/// Prompt indices grouped by prompt length, in chunks of at most `DECODE_BATCH`: each
/// chunk decodes as one batch with no padding.
pub(crate) fn length_groups(prompts: &[Vec<u32>]) -> Vec<(usize, Vec<usize>)> {
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, p) in prompts.iter().enumerate() {
        by_len.entry(p.len()).or_default().push(i);
    }
    by_len
        .into_iter()
        .flat_map(|(len, rows)| {
            rows.chunks(DECODE_BATCH)
                .map(|c| (len, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The chunk's prompts, each followed by `extra` copies of `fill`, as one tensor.
pub(crate) fn group_tensor(
    prompts: &[Vec<u32>],
    rows: &[usize],
    extra: usize,
    fill: u32,
    device: &Device,
) -> Tensor<2, Int> {
    let width = prompts[rows[0]].len() + extra;
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|&i| {
            prompts[i]
                .iter()
                .copied()
                .chain(std::iter::repeat_n(fill, extra))
                .map(i64::from)
        })
        .collect();
    Tensor::from_data(TensorData::new(ids, [rows.len(), width]), device)
}

pub fn greedy<M: Incremental>(
    model: &M,
    prompts: &[Vec<u32>],
    max_new: usize,
    end: u32,
    device: &Device,
) -> Vec<Decoded> {
    decode(model, prompts, max_new, end, device, &mut |logits| {
        logits.argmax(1)
    })
}

/// Answers drawn token by token from softmax(logits / temperature), by `rng`.
pub fn sample<M: Incremental>(
    model: &M,
    prompts: &[Vec<u32>],
    max_new: usize,
    end: u32,
    temperature: f64,
    rng: &mut dyn rand::RngCore,
    device: &Device,
) -> Vec<Decoded> {
    decode(model, prompts, max_new, end, device, &mut |logits| {
        let [batch, vocab] = logits.dims();
        let device = logits.device();
        let probs = burn::tensor::activation::softmax(logits / temperature, 1);
        let probs: Vec<f32> = probs.into_data().iter::<f32>().collect();
        let picked: Vec<i64> = probs
            .chunks(vocab)
            .map(|row| draw(row, rng) as i64)
            .collect();
        Tensor::from_data(TensorData::new(picked, [batch, 1]), &device)
    })
}

/// An index drawn with the given probabilities (which sum to about one).
fn draw(probs: &[f32], rng: &mut dyn rand::RngCore) -> usize {
    let mut u = rand::Rng::gen::<f32>(rng) * probs.iter().sum::<f32>();
    for (i, p) in probs.iter().enumerate() {
        if u < *p {
            return i;
        }
        u -= p;
    }
    probs.len() - 1
}

/// Decodes every prompt, `pick` choosing each next token from the logits [batch, vocab].
fn decode<M: Incremental>(
    model: &M,
    prompts: &[Vec<u32>],
    max_new: usize,
    end: u32,
    device: &Device,
    pick: &mut dyn FnMut(Tensor<2>) -> Tensor<2, Int>,
) -> Vec<Decoded> {
    let mut out = vec![Decoded::default(); prompts.len()];
    for (_, rows) in length_groups(prompts) {
        let tokens = group_tensor(prompts, &rows, 0, 0, device);
        decode_group(model, tokens, &rows, max_new, end, &mut out, pick);
    }
    out
}

fn decode_group<M: Incremental>(
    model: &M,
    tokens: Tensor<2, Int>,
    rows: &[usize],
    max_new: usize,
    end: u32,
    out: &mut [Decoded],
    pick: &mut dyn FnMut(Tensor<2>) -> Tensor<2, Int>,
) {
    let (mut logits, mut state) = model.prefill(tokens);
    for step in 0..max_new {
        let next = pick(logits); // [batch, 1]
        let host: Vec<i64> = next.to_data().iter::<i64>().collect();
        for (&row, &token) in rows.iter().zip(&host) {
            let d = &mut out[row];
            if d.ended {
                continue;
            }
            if token as u32 == end {
                d.ended = true;
            } else {
                d.tokens.push(token as u32);
            }
        }
        if step + 1 == max_new || rows.iter().all(|&r| out[r].ended) {
            break;
        }
        (logits, state) = model.step(next, state);
    }
}

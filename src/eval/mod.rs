//! Scoring: teacher-forced validation metrics during training, greedy decoding with exact
//! match for test sets, and the reports written from them.
//!
//! Teacher-forced exact match (every answer token is the argmax given the true tokens
//! before it) equals greedy-decoding exact match for an autoregressive model: by induction
//! the greedy output never leaves the true path. So validation costs one batched forward
//! pass, while the final test score comes from real decoding.

mod report;
pub mod suite;

pub use report::{write_outputs, EvalReport};

use crate::data::batcher::{make_batch, Layout};
use crate::data::{Example, Vocab};
use crate::model::Model;
use burn::prelude::*;

/// Teacher-forced metrics over answer tokens (closers and the final `,`); for language
/// models over every scored token, with no exact match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValMetrics {
    pub loss: f64,
    pub token_acc: f64,
    pub exact: Option<f64>,
}

const EVAL_BATCH: usize = 512;

/// Logits one evaluation batch of text may hold (batch x length x tokens, f32: 64 MiB):
/// windows are long and vocabularies large, so 512 of them would take gigabytes.
const EVAL_LOGITS: usize = 16 << 20;

/// Rows per evaluation batch: `EVAL_BATCH` for bracket records, fewer for text windows.
fn eval_rows(model: &Model, examples: &[Example], layout: Layout) -> usize {
    match (layout, model) {
        (Layout::Text, Model::Gpt2(m)) => {
            let longest = examples.iter().map(|e| e.prefix.len()).max().unwrap_or(1);
            (EVAL_LOGITS / (longest * m.n_tokens()).max(1)).clamp(1, EVAL_BATCH)
        }
        _ => EVAL_BATCH,
    }
}

pub fn teacher_forced(
    model: &Model,
    examples: &[Example],
    vocab: &Vocab,
    layout: Layout,
    device: &Device,
) -> ValMetrics {
    let loss_fn = crate::model::loss_fn(device);
    let (mut loss_sum, mut tokens, mut right_tokens, mut exact) = (0.0f64, 0usize, 0usize, 0usize);
    for chunk in examples.chunks(eval_rows(model, examples, layout)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let batch = make_batch(&refs, vocab, layout, device, None);
        let logits = model.forward(&batch); // [batch, len, vocab]
        let n_tokens = logits.dims()[2];
        let flat = logits.reshape([batch.size * batch.len, n_tokens]);
        let predicted: Vec<i64> = flat.clone().argmax(1).to_data().iter::<i64>().collect();
        let answer_tokens = batch.answer_ids.iter().filter(|&&t| t != 0).count();
        let loss = f64::from(loss_fn.forward(flat, batch.targets).into_scalar::<f32>());
        loss_sum += loss * answer_tokens as f64;
        tokens += answer_tokens;
        for row in 0..batch.size {
            let span = row * batch.len..(row + 1) * batch.len;
            let mut all_right = true;
            for (t, p) in batch.answer_ids[span.clone()].iter().zip(&predicted[span]) {
                if *t != 0 {
                    right_tokens += usize::from(t == p);
                    all_right &= t == p;
                }
            }
            exact += usize::from(all_right);
        }
    }
    ValMetrics {
        loss: loss_sum / tokens.max(1) as f64,
        token_acc: right_tokens as f64 / tokens.max(1) as f64,
        exact: (!layout.is_lm()).then(|| exact as f64 / examples.len().max(1) as f64),
    }
}

/// One scored example.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Prediction {
    pub input: String,
    pub expected: String,
    pub predicted: String,
    pub correct: bool,
}

/// Greedy answers for each example, scored by exact match (order included, and the final
/// `,` written within `max_answer_len` tokens).
pub fn predict(
    model: &Model,
    examples: &[Example],
    vocab: &Vocab,
    max_answer_len: usize,
    device: &Device,
) -> Vec<Prediction> {
    let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt(vocab)).collect();
    predict_after(model, examples, prompts, vocab, max_answer_len, device)
}

/// Zero-shot closing by a language model (`data.task = "lm"`, next-token): it continues
/// `input` + prefix, never having seen `,output`; correct when it writes exactly the
/// closers and then `,` (the end of a complete string).
pub fn predict_continuations(
    model: &Model,
    examples: &[Example],
    vocab: &Vocab,
    max_answer_len: usize,
    device: &Device,
) -> Vec<Prediction> {
    let prompts: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| {
            std::iter::once(vocab.input())
                .chain(e.prefix.iter().copied())
                .collect()
        })
        .collect();
    predict_after(model, examples, prompts, vocab, max_answer_len, device)
}

fn predict_after(
    model: &Model,
    examples: &[Example],
    prompts: Vec<Vec<u32>>,
    vocab: &Vocab,
    max_answer_len: usize,
    device: &Device,
) -> Vec<Prediction> {
    let decoded = model.generate(&prompts, max_answer_len, vocab, device);
    examples
        .iter()
        .zip(decoded)
        .map(|(e, d)| Prediction {
            input: vocab.decode(&e.prefix),
            expected: vocab.decode(&e.answer),
            predicted: vocab.decode(&d.tokens),
            correct: d.ended && d.tokens == e.answer,
        })
        .collect()
}

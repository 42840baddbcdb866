//! Examples to burn tensors. Each batch is trimmed to its own longest record, and batches
//! are bucketed by length: a step's cost grows with the padded length, and the default
//! task's records vary from 5 to 29 tokens.

use super::task::Example;
use super::vocab::{Vocab, PAD};
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// How an architecture reads a record and where its loss goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layout {
    /// Decoder-only and recurrent models: the record minus its last token in, the next token
    /// out. With `loss_on_all`, training targets cover the prefix too (language modelling).
    NextToken { loss_on_all: bool },
    /// Encoder-decoder: `input` + prefix to the encoder; `,output` + closers to the decoder,
    /// which predicts the closers and the final `,`.
    EncoderDecoder,
    /// Masked language model: the prompt, then `slots` mask tokens that should read the
    /// closers, `,`, then anything. With `mlm_prob`, training also masks prefix tokens.
    Masked {
        slots: usize,
        mask_id: u32,
        mlm_prob: f64,
    },
    /// Language modelling on unlabelled strings (`data.task = "lm"`): `input` + string + `,`,
    /// every next token scored.
    NextTokenLm,
    /// Masked language modelling on unlabelled strings: each bracket hidden with
    /// `mlm_prob` (at least one per string), the hidden ones scored.
    MaskedLm { mask_id: u32, mlm_prob: f64 },
    /// A window of text tokens (`data.source = "text"`), read as it is: every token but
    /// the last in, every token but the first out, all scored.
    Text,
}

impl Layout {
    /// Does this layout learn unlabelled strings (no exact match to score)?
    pub fn is_lm(self) -> bool {
        matches!(
            self,
            Layout::NextTokenLm | Layout::MaskedLm { .. } | Layout::Text
        )
    }
}

/// A batch in a model's layout. `answer_ids` marks the positions that are scored (closers
/// and the final `,`): they are the same whatever the layout adds to the loss in training.
pub struct Batch {
    /// Encoder input [batch, src_len], for encoder-decoder models only.
    pub source: Option<Tensor<2, Int>>,
    /// [batch, len]
    pub tokens: Tensor<2, Int>,
    /// Loss targets [batch * len], PAD where no loss is taken.
    pub targets: Tensor<1, Int>,
    /// Answer targets on the host [batch * len], PAD elsewhere.
    pub answer_ids: Vec<i64>,
    pub size: usize,
    pub len: usize,
}

impl Batch {
    /// The batch cut into `parts` runs of consecutive rows, as even as the rows allow (each
    /// keeps the batch's width), with each part's count of scored targets (not PAD).
    pub fn split_rows(&self, parts: usize) -> Vec<(Batch, usize)> {
        let per = self.size.div_ceil(parts.max(1)).max(1);
        let targets: Vec<i64> = self.targets.to_data().iter::<i64>().collect();
        let device = self.tokens.device();
        (0..self.size)
            .step_by(per)
            .map(|start| {
                let rows = start..(start + per).min(self.size);
                let cells = rows.start * self.len..rows.end * self.len;
                let scored = targets[cells.clone()]
                    .iter()
                    .filter(|&&t| t != PAD as i64)
                    .count();
                let part = Batch {
                    source: self.source.clone().map(|s| s.slice(rows.clone())),
                    tokens: self.tokens.clone().slice(rows.clone()),
                    targets: Tensor::from_data(
                        TensorData::new(targets[cells.clone()].to_vec(), [cells.len()]),
                        &device,
                    ),
                    answer_ids: self.answer_ids[cells].to_vec(),
                    size: rows.len(),
                    len: self.len,
                };
                (part, scored)
            })
            .collect()
    }
}

/// Host-side rows before they become tensors.
struct Rows {
    width: usize,
    tokens: Vec<i64>,
    targets: Vec<i64>,
    answers: Vec<i64>,
}

impl Rows {
    fn new(size: usize, width: usize) -> Self {
        let pad = PAD as i64;
        Self {
            width,
            tokens: vec![pad; size * width],
            targets: vec![pad; size * width],
            answers: vec![pad; size * width],
        }
    }

    fn set(&mut self, row: usize, t: usize, token: u32) {
        self.tokens[row * self.width + t] = token as i64;
    }

    /// A scored answer position: loss and accuracy both.
    fn answer(&mut self, row: usize, t: usize, target: u32) {
        self.targets[row * self.width + t] = target as i64;
        self.answers[row * self.width + t] = target as i64;
    }

    /// A position that only adds to the training loss.
    fn extra(&mut self, row: usize, t: usize, target: u32) {
        self.targets[row * self.width + t] = target as i64;
    }
}

/// Builds a batch. `noise` (training only) drives the random masking of `Layout::Masked`;
/// without it, and in every layout without `loss_on_all`, only answers are targets.
pub fn make_batch(
    examples: &[&Example],
    vocab: &Vocab,
    layout: Layout,
    device: &Device,
    noise: Option<&mut dyn rand::RngCore>,
) -> Batch {
    let size = examples.len();
    let training = noise.is_some();
    let (rows, source) = match layout {
        Layout::NextToken { loss_on_all } => {
            (next_token(examples, vocab, loss_on_all && training), None)
        }
        Layout::EncoderDecoder => {
            let (rows, source) = encoder_decoder(examples, vocab);
            (rows, Some(source))
        }
        Layout::Masked {
            slots,
            mask_id,
            mlm_prob,
        } => (
            masked(examples, vocab, slots, mask_id, mlm_prob, noise),
            None,
        ),
        Layout::NextTokenLm => (next_token_lm(examples, vocab), None),
        Layout::Text => (text_windows(examples), None),
        Layout::MaskedLm { mask_id, mlm_prob } => {
            (masked_lm(examples, vocab, mask_id, mlm_prob, noise), None)
        }
    };
    let len = rows.width;
    Batch {
        source: source
            .map(|s| Tensor::from_data(TensorData::new(s.tokens, [size, s.width]), device)),
        tokens: Tensor::from_data(TensorData::new(rows.tokens, [size, len]), device),
        targets: Tensor::from_data(TensorData::new(rows.targets, [size * len]), device),
        answer_ids: rows.answers,
        size,
        len,
    }
}

fn next_token(examples: &[&Example], vocab: &Vocab, loss_on_all: bool) -> Rows {
    let records: Vec<Vec<u32>> = examples.iter().map(|e| e.record(vocab)).collect();
    let width = records.iter().map(|r| r.len() - 1).max().unwrap_or(1);
    let mut rows = Rows::new(records.len(), width);
    for (row, (record, example)) in records.iter().zip(examples).enumerate() {
        // Position of `,output`: from there on, the next token is part of the answer.
        let answer_from = example.prefix.len() + 1;
        for t in 0..record.len() - 1 {
            rows.set(row, t, record[t]);
            if t >= answer_from {
                rows.answer(row, t, record[t + 1]);
            } else if loss_on_all {
                rows.extra(row, t, record[t + 1]);
            }
        }
    }
    rows
}

fn next_token_lm(examples: &[&Example], vocab: &Vocab) -> Rows {
    let records: Vec<Vec<u32>> = examples.iter().map(|e| e.record(vocab)).collect();
    let width = records.iter().map(|r| r.len() - 1).max().unwrap_or(1);
    let mut rows = Rows::new(records.len(), width);
    for (row, record) in records.iter().enumerate() {
        for t in 0..record.len() - 1 {
            rows.set(row, t, record[t]);
            rows.answer(row, t, record[t + 1]);
        }
    }
    rows
}

/// Validation masks come from a fixed seed, so that every evaluation hides the same tokens.
const VALIDATION_MASK_SEED: u64 = 0x6d61_736b;

/// Text windows (the example's `prefix` holds the window's tokens): input and target
/// shifted by one, padding (a short last validation window) neither read nor scored.
fn text_windows(examples: &[&Example]) -> Rows {
    let width = examples
        .iter()
        .map(|e| e.prefix.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let mut rows = Rows::new(examples.len(), width);
    for (row, e) in examples.iter().enumerate() {
        for (t, pair) in e.prefix.windows(2).enumerate() {
            rows.set(row, t, pair[0]);
            rows.answer(row, t, pair[1]);
        }
    }
    rows
}

fn masked_lm(
    examples: &[&Example],
    vocab: &Vocab,
    mask_id: u32,
    mlm_prob: f64,
    noise: Option<&mut dyn rand::RngCore>,
) -> Rows {
    let mut fixed = rand_chacha::ChaCha8Rng::seed_from_u64(VALIDATION_MASK_SEED);
    let rng: &mut dyn rand::RngCore = match noise {
        Some(r) => r,
        None => &mut fixed,
    };
    let records: Vec<Vec<u32>> = examples.iter().map(|e| e.record(vocab)).collect();
    let width = records.iter().map(Vec::len).max().unwrap_or(1);
    let mut rows = Rows::new(records.len(), width);
    for (row, record) in records.iter().enumerate() {
        // The brackets sit between `input` and the final `,`.
        let brackets = 1..record.len() - 1;
        let mut hidden: Vec<usize> = brackets
            .clone()
            .filter(|_| rng.gen_bool(mlm_prob))
            .collect();
        if hidden.is_empty() && !brackets.is_empty() {
            hidden.push(rng.gen_range(brackets));
        }
        for (t, &id) in record.iter().enumerate() {
            if hidden.contains(&t) {
                rows.set(row, t, mask_id);
                rows.answer(row, t, id);
            } else {
                rows.set(row, t, id);
            }
        }
    }
    rows
}

/// Returns the decoder rows and the encoder rows (`input` + prefix).
fn encoder_decoder(examples: &[&Example], vocab: &Vocab) -> (Rows, Rows) {
    let src_width = examples
        .iter()
        .map(|e| e.prefix.len() + 1)
        .max()
        .unwrap_or(1);
    let width = examples
        .iter()
        .map(|e| e.answer.len() + 1)
        .max()
        .unwrap_or(1);
    let mut source = Rows::new(examples.len(), src_width);
    let mut rows = Rows::new(examples.len(), width);
    for (row, e) in examples.iter().enumerate() {
        source.set(row, 0, vocab.input());
        for (t, &id) in e.prefix.iter().enumerate() {
            source.set(row, t + 1, id);
        }
        let mut decoder_in = vec![vocab.output()];
        decoder_in.extend(&e.answer);
        let mut decoder_out = e.answer.clone();
        decoder_out.push(vocab.end());
        for (t, (&i, &o)) in decoder_in.iter().zip(&decoder_out).enumerate() {
            rows.set(row, t, i);
            rows.answer(row, t, o);
        }
    }
    (rows, source)
}

fn masked(
    examples: &[&Example],
    vocab: &Vocab,
    slots: usize,
    mask_id: u32,
    mlm_prob: f64,
    mut noise: Option<&mut dyn rand::RngCore>,
) -> Rows {
    let width = examples
        .iter()
        .map(|e| e.prefix.len() + 2)
        .max()
        .unwrap_or(1)
        + slots;
    let mut rows = Rows::new(examples.len(), width);
    for (row, e) in examples.iter().enumerate() {
        let prompt = e.prompt(vocab);
        for (t, &id) in prompt.iter().enumerate() {
            let is_bracket = (1..=e.prefix.len()).contains(&t);
            let hide = is_bracket
                && mlm_prob > 0.0
                && noise.as_mut().is_some_and(|r| r.gen_bool(mlm_prob));
            if hide {
                rows.set(row, t, mask_id);
                rows.extra(row, t, id);
            } else {
                rows.set(row, t, id);
            }
        }
        let mut answer = e.answer.clone();
        answer.push(vocab.end());
        for s in 0..slots {
            let t = prompt.len() + s;
            rows.set(row, t, mask_id);
            if let Some(&target) = answer.get(s) {
                rows.answer(row, t, target);
            }
        }
    }
    rows
}

/// One epoch's batches as index lists: shuffled, then sorted by length within windows of
/// 16 batches so that each batch holds records of similar length, then shuffled again.
pub fn epoch_batches<R: Rng>(lengths: &[usize], batch_size: usize, rng: &mut R) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches = Vec::new();
    for window in order.chunks(batch_size * 16) {
        let mut window = window.to_vec();
        window.sort_by_key(|&i| lengths[i]);
        batches.extend(window.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_index_once_per_epoch_in_similar_length_batches() {
        let lengths: Vec<usize> = (0..1000).map(|i| 5 + (i * 7919) % 25).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let batches = epoch_batches(&lengths, 32, &mut rng);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        let spread: f64 = batches
            .iter()
            .map(|b| {
                let ls: Vec<usize> = b.iter().map(|&i| lengths[i]).collect();
                (ls.iter().max().unwrap() - ls.iter().min().unwrap()) as f64
            })
            .sum::<f64>()
            / batches.len() as f64;
        assert!(spread < 5.0, "mean length spread within a batch {spread}");
    }

    #[test]
    fn language_model_layouts_score_every_next_token_or_the_hidden_ones() {
        let v = Vocab::new(&[('(', ')'), ('【', '】'), ('{', '}')]);
        let s = Example {
            prefix: v.encode("【()").unwrap(),
            answer: Vec::new(),
        };
        let batch = make_batch(&[&s], &v, Layout::NextTokenLm, &Device::flex(), None);
        // record: input 【 ( ) ,  -> in: input 【 ( )  out: 【 ( ) ,
        let tokens: Vec<i64> = batch.tokens.to_data().iter::<i64>().collect();
        assert_eq!(tokens, [7, 3, 1, 2]);
        assert_eq!(batch.answer_ids, [3, 1, 2, 9]);

        let layout = Layout::MaskedLm {
            mask_id: 10,
            mlm_prob: 0.0,
        };
        let batch = make_batch(&[&s], &v, layout, &Device::flex(), None);
        let tokens: Vec<i64> = batch.tokens.to_data().iter::<i64>().collect();
        // At least one bracket is hidden, and only brackets; exactly those are scored.
        let hidden: Vec<usize> = (0..tokens.len()).filter(|&t| tokens[t] == 10).collect();
        assert_eq!(hidden.len(), 1);
        assert!((1..=3).contains(&hidden[0]));
        let record = s.record(&v);
        for (t, &id) in batch.answer_ids.iter().enumerate() {
            let expected = if hidden.contains(&t) {
                record[t] as i64
            } else {
                0
            };
            assert_eq!(id, expected);
        }
        // Validation masks are the same every time.
        let again = make_batch(&[&s], &v, layout, &Device::flex(), None);
        assert_eq!(again.answer_ids, batch.answer_ids);
    }

    #[test]
    fn targets_cover_exactly_the_answer_and_the_end_token() {
        let v = Vocab::new(&[('(', ')'), ('【', '】'), ('{', '}')]);
        let e = Example {
            prefix: v.encode("【(").unwrap(),
            answer: v.encode(")】").unwrap(),
        };
        let short = Example {
            prefix: v.encode("{").unwrap(),
            answer: v.encode("}").unwrap(),
        };
        let layout = Layout::NextToken { loss_on_all: false };
        let batch = make_batch(&[&e, &short], &v, layout, &Device::flex(), None);
        assert_eq!((batch.size, batch.len), (2, 6));
        // record: input 【 ( ,output ) 】 ,   -> tokens are the first six
        assert_eq!(batch.answer_ids[..6], [0, 0, 0, 2, 4, 9]);
        // record: input { ,output } ,        -> padded to six
        assert_eq!(batch.answer_ids[6..], [0, 0, 6, 9, 0, 0]);

        let layout = Layout::EncoderDecoder;
        let batch = make_batch(&[&e, &short], &v, layout, &Device::flex(), None);
        // decoder: ,output ) 】 -> ) 】 ,
        assert_eq!(batch.answer_ids, [2, 4, 9, 6, 9, 0]);
        let source: Vec<i64> = batch.source.unwrap().to_data().iter::<i64>().collect();
        assert_eq!(source, [7, 3, 1, 7, 5, 0]);

        let layout = Layout::Masked {
            slots: 4,
            mask_id: 10,
            mlm_prob: 0.0,
        };
        let batch = make_batch(&[&e], &v, layout, &Device::flex(), None);
        let tokens: Vec<i64> = batch.tokens.to_data().iter::<i64>().collect();
        assert_eq!(tokens, [7, 3, 1, 8, 10, 10, 10, 10]);
        assert_eq!(batch.answer_ids, [0, 0, 0, 0, 2, 4, 9, 0]);
    }
}

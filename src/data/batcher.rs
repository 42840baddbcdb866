//! Examples to burn tensors. Each batch is trimmed to its own longest record, and batches
//! are bucketed by length: a step's cost grows with the padded length, and the default
//! task's records vary from 5 to 29 tokens.

use super::task::Example;
use super::vocab::{Vocab, PAD};
use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;

/// Next-token training batch: the record minus its last token as input, and as targets the
/// next token on answer positions only (closers and the final `,`), padding elsewhere.
pub struct Batch {
    /// [batch, len]
    pub tokens: Tensor<2, Int>,
    /// [batch * len], PAD where no loss is taken.
    pub targets: Tensor<1, Int>,
    /// The same targets on the host, for accuracy without another device read.
    pub target_ids: Vec<i64>,
    pub size: usize,
    pub len: usize,
}

pub fn make_batch(examples: &[&Example], vocab: &Vocab, device: &Device) -> Batch {
    let records: Vec<Vec<u32>> = examples.iter().map(|e| e.record(vocab)).collect();
    let len = records.iter().map(|r| r.len() - 1).max().unwrap_or(1);
    let size = records.len();
    let mut tokens = vec![PAD as i64; size * len];
    let mut targets = vec![PAD as i64; size * len];
    for (row, (record, example)) in records.iter().zip(examples).enumerate() {
        // Position of `,output`: from there on, the next token is part of the answer.
        let answer_from = example.prefix.len() + 1;
        for t in 0..record.len() - 1 {
            tokens[row * len + t] = record[t] as i64;
            if t >= answer_from {
                targets[row * len + t] = record[t + 1] as i64;
            }
        }
    }
    Batch {
        tokens: Tensor::from_data(TensorData::new(tokens, [size, len]), device),
        targets: Tensor::from_data(TensorData::new(targets.clone(), [size * len]), device),
        target_ids: targets,
        size,
        len,
    }
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
        let batch = make_batch(&[&e, &short], &v, &Device::flex());
        assert_eq!((batch.size, batch.len), (2, 6));
        // record: input 【 ( ,output ) 】 ,   -> tokens are the first six
        assert_eq!(batch.target_ids[..6], [0, 0, 0, 2, 4, 9]);
        // record: input { ,output } ,        -> padded to six
        assert_eq!(batch.target_ids[6..], [0, 0, 6, 9, 0, 0]);
    }
}

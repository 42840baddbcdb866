//! Training-time augmentation, drawn from the run's noise generator (so a resumed run draws
//! the same), each keeping every example a correct closing:
//! - `permute_pairs` relabels the bracket types of each example with a random permutation
//!   of the pairs, the same for its prefix and its answer: every nesting pattern is seen
//!   with every pair.
//! - `mix_lengths` puts a closed string in front of half the examples: another example of
//!   the batch with its answer (balanced), when the two fit in `data.max_len`. The answer is
//!   unchanged, the prefix longer: the model learns that what is closed does not matter.

use super::task::Example;
use super::vocab::Vocab;
use rand::seq::SliceRandom;
use rand::Rng;

/// The batch as `train.augment` changes it (mix first, then permute); None without
/// augmentation, when the batch is used as it is.
pub fn apply(
    examples: &[&Example],
    spec: &crate::spec::Spec,
    vocab: &Vocab,
    rng: &mut impl Rng,
) -> Option<Vec<Example>> {
    use crate::spec::Augment;
    let wants = |a: Augment| spec.train.augment.contains(&a);
    if spec.train.augment.is_empty() {
        return None;
    }
    let mut batch: Vec<Example> = examples.iter().map(|&e| e.clone()).collect();
    if wants(Augment::MixLengths) {
        batch = mix_lengths(&batch, spec.data.max_len, rng);
    }
    if wants(Augment::PermutePairs) {
        let refs: Vec<&Example> = batch.iter().collect();
        batch = permute_pairs(&refs, vocab, rng);
    }
    Some(batch)
}

/// `example` with pair `i` renamed to pair `order[i]` throughout (openers and closers).
pub fn relabel(example: &Example, vocab: &Vocab, order: &[usize]) -> Example {
    let n = vocab.n_pairs() as u32;
    let map = |id: u32| -> u32 {
        if id == 0 || id > 2 * n {
            return id; // padding, `input`, `,output`, `,`
        }
        let pair = ((id - 1) / 2) as usize;
        let closer = (id - 1) % 2;
        2 * order[pair] as u32 + 1 + closer
    };
    Example {
        prefix: example.prefix.iter().map(|&id| map(id)).collect(),
        answer: example.answer.iter().map(|&id| map(id)).collect(),
    }
}

/// A random relabelling of each example.
pub fn permute_pairs(examples: &[&Example], vocab: &Vocab, rng: &mut impl Rng) -> Vec<Example> {
    let mut order: Vec<usize> = (0..vocab.n_pairs()).collect();
    examples
        .iter()
        .map(|e| {
            order.shuffle(rng);
            relabel(e, vocab, &order)
        })
        .collect()
}

/// Half the examples, each after another example of the batch closed (its prefix and
/// answer), when the whole fits in `max_len` brackets.
pub fn mix_lengths(examples: &[Example], max_len: usize, rng: &mut impl Rng) -> Vec<Example> {
    examples
        .iter()
        .map(|e| {
            if examples.len() < 2 || !rng.gen_bool(0.5) {
                return e.clone();
            }
            let other = &examples[rng.gen_range(0..examples.len())];
            let closed = other.prefix.len() + other.answer.len();
            if closed + e.prefix.len() > max_len {
                return e.clone();
            }
            let mut prefix = Vec::with_capacity(closed + e.prefix.len());
            prefix.extend(&other.prefix);
            prefix.extend(&other.answer);
            prefix.extend(&e.prefix);
            Example {
                prefix,
                answer: e.answer.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::task::closing;
    use proptest::prelude::*;

    fn vocab() -> Vocab {
        Vocab::new(&[('(', ')'), ('[', ']'), ('{', '}'), ('<', '>')])
    }

    proptest! {
        /// Every relabelled example is still an open prefix with its correct closing.
        #[test]
        fn relabelled_examples_stay_valid(seed in any::<u64>(), n in 1usize..40) {
            let v = vocab();
            let params = crate::data::task::TaskParams { n_pairs: 4, min_len: 1, max_len: 30, max_depth: 8 };
            let mut generator = crate::data::task::Generator::new(params, seed);
            let examples: Vec<Example> = (0..n).map(|_| generator.draw(&v)).collect();
            let refs: Vec<&Example> = examples.iter().collect();
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            for (before, after) in examples.iter().zip(permute_pairs(&refs, &v, &mut rng)) {
                prop_assert_eq!(after.prefix.len(), before.prefix.len());
                prop_assert_eq!(closing(&v, &after.prefix).unwrap(), after.answer);
            }
        }
    }

    proptest! {
        /// Every mixed example is still an open prefix with its correct closing, no longer
        /// than the limit.
        #[test]
        fn mixed_examples_stay_valid(seed in any::<u64>(), n in 1usize..40) {
            let v = vocab();
            let params = crate::data::task::TaskParams { n_pairs: 4, min_len: 1, max_len: 20, max_depth: 6 };
            let mut generator = crate::data::task::Generator::new(params, seed);
            let examples: Vec<Example> = (0..n).map(|_| generator.draw(&v)).collect();
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            for (before, after) in examples.iter().zip(mix_lengths(&examples, 20, &mut rng)) {
                prop_assert!(after.prefix.len() <= 20.max(before.prefix.len()));
                prop_assert!(after.prefix.ends_with(&before.prefix));
                prop_assert_eq!(closing(&v, &after.prefix).unwrap(), after.answer);
            }
        }
    }

    #[test]
    fn a_relabelling_renames_pairs_consistently() {
        let v = vocab();
        let e = Example {
            prefix: vec![1, 3, 4, 5],
            answer: vec![6, 2],
        }; // ( [ ] {  -> } )
        let r = relabel(&e, &v, &[2, 0, 1, 3]); // ( -> {, [ -> (, { -> [
        assert_eq!(r.prefix, vec![5, 1, 2, 3]);
        assert_eq!(r.answer, vec![4, 6]);
    }
}

//! The task, as pure functions of a seed: random open prefixes and their closing sequences.
//!
//! A prefix is a random walk of opens and closes over the bracket pairs, of length in
//! [min_len, max_len], never deeper than max_depth, ending with at least one opener unclosed.
//! Its answer is the closers of the unclosed openers, innermost first.

use super::vocab::Vocab;
use crate::spec::Task;
use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// The shape of the task's prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskParams {
    pub n_pairs: usize,
    pub min_len: usize,
    pub max_len: usize,
    pub max_depth: usize,
}

/// One example, as token ids. `answer` holds the closers only; the record adds the final `,`.
/// An unlabelled string (`data.task = "lm"`) is an example with no answer: every open
/// prefix has one, so an empty answer means "no label".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Example {
    pub prefix: Vec<u32>,
    pub answer: Vec<u32>,
}

impl Example {
    /// `input` + prefix + `,output` + closers + `,`; for an unlabelled string,
    /// `input` + string + `,`.
    pub fn record(&self, vocab: &Vocab) -> Vec<u32> {
        if self.is_unlabelled() {
            let mut ids = Vec::with_capacity(self.prefix.len() + 2);
            ids.push(vocab.input());
            ids.extend(&self.prefix);
            ids.push(vocab.end());
            return ids;
        }
        let mut ids = Vec::with_capacity(self.prefix.len() + self.answer.len() + 3);
        ids.extend(self.prompt(vocab));
        ids.extend(&self.answer);
        ids.push(vocab.end());
        ids
    }

    /// A string for language modelling rather than a prefix to close.
    pub fn is_unlabelled(&self) -> bool {
        self.answer.is_empty()
    }

    /// `input` + prefix + `,output`: what the model is given.
    pub fn prompt(&self, vocab: &Vocab) -> Vec<u32> {
        let mut ids = Vec::with_capacity(self.prefix.len() + 2);
        ids.push(vocab.input());
        ids.extend(&self.prefix);
        ids.push(vocab.output());
        ids
    }

    /// Deepest nesting reached anywhere in the prefix.
    pub fn max_nesting(&self, vocab: &Vocab) -> usize {
        let (mut depth, mut deepest) = (0usize, 0usize);
        for &id in &self.prefix {
            if vocab.is_opener(id) {
                depth += 1;
                deepest = deepest.max(depth);
            } else {
                depth = depth.saturating_sub(1);
            }
        }
        deepest
    }
}

/// Why a string is not a valid open prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("closer at position {position} does not match an open bracket")]
    Unmatched { position: usize },
    #[error("every bracket is already closed: nothing to complete")]
    NothingOpen,
}

/// The closing sequence of a prefix, innermost first.
pub fn closing(vocab: &Vocab, prefix: &[u32]) -> Result<Vec<u32>, PrefixError> {
    let mut stack = Vec::new();
    for (position, &id) in prefix.iter().enumerate() {
        if vocab.is_opener(id) {
            stack.push(id);
        } else if stack.pop().map(|o| vocab.closer_of(o)) != Some(id) {
            return Err(PrefixError::Unmatched { position });
        }
    }
    if stack.is_empty() {
        return Err(PrefixError::NothingOpen);
    }
    Ok(stack.iter().rev().map(|&o| vocab.closer_of(o)).collect())
}

/// Can a walk at `depth` with `remaining` steps still end at a depth in [1, max_depth]?
fn feasible(depth: usize, remaining: usize, max_depth: usize) -> bool {
    let parity = (depth + remaining) % 2;
    let mut lo = depth.saturating_sub(remaining).max(1);
    let hi = (depth + remaining).min(max_depth);
    if lo % 2 != parity {
        lo += 1;
    }
    lo <= hi
}

/// Draws examples from the task's distribution.
pub struct Generator {
    params: TaskParams,
    lengths: Vec<usize>,
    rng: ChaCha8Rng,
    task: Task,
    /// Set by [`Generator::balance`]: answer lengths drawn at other shares than the task's.
    balance: Option<Balance>,
}

impl Generator {
    pub fn new(params: TaskParams, seed: u64) -> Self {
        Self {
            params,
            lengths: prefix_lengths(params),
            rng: ChaCha8Rng::seed_from_u64(seed),
            task: Task::Close,
            balance: None,
        }
    }

    /// Draws for `task`: labelled examples, or unlabelled strings.
    pub fn with_task(mut self, task: Task) -> Self {
        self.task = task;
        self
    }

    /// The next example of this generator's task.
    pub fn draw(&mut self, vocab: &Vocab) -> Example {
        match self.task {
            Task::Close => self.sample(vocab),
            Task::Lm => self.sample_string(vocab),
        }
    }

    /// An unlabelled bracket string for language modelling, as an example with no answer:
    /// an open prefix, or (half the time) a complete sequence, the prefix and its closing.
    pub fn sample_string(&mut self, vocab: &Vocab) -> Example {
        let mut e = self.sample(vocab);
        if self.rng.gen_bool(0.5) {
            e.prefix.append(&mut e.answer);
        }
        e.answer.clear();
        e
    }

    /// A prefix length, then the walk. Balanced (`data.balance_answers`): an answer length
    /// from the balanced shares, a prefix length given it, then the walk conditioned to end
    /// there, so that among prefixes of one answer length the task's distribution is kept.
    pub fn sample(&mut self, vocab: &Vocab) -> Example {
        let Some(balance) = &self.balance else {
            let len = self.lengths[self.rng.gen_range(0..self.lengths.len())];
            return self.walk(vocab, len, None);
        };
        let answer_len = balance.answer_len.sample(&mut self.rng);
        let given = balance.len_given[answer_len]
            .as_ref()
            .expect("only answer lengths the task gives are drawn");
        let len = self.lengths[given.sample(&mut self.rng)];
        let reach = reach(len, answer_len, self.params.max_depth);
        self.walk(vocab, len, Some(&reach))
    }

    /// Draws from now on with answer lengths in proportion to p^(1 − strength), p their
    /// share in the task (`data.balance_answers`); 0 restores the task's own draws.
    pub fn balance(&mut self, strength: f64) {
        self.balance = (strength > 0.0).then(|| Balance::new(self.params, &self.lengths, strength));
    }

    /// A random walk of `len` brackets: where both moves stay feasible, open with
    /// probability ½, or, given [`reach`] for the end depth wanted, ½ reweighted by the
    /// chance of still ending there (a Doob h-transform of the same walk).
    fn walk(&mut self, vocab: &Vocab, len: usize, reach: Option<&[Vec<f64>]>) -> Example {
        let max_depth = self.params.max_depth;
        let mut stack: Vec<u32> = Vec::with_capacity(max_depth);
        let mut prefix = Vec::with_capacity(len);
        for step in 0..len {
            let depth = stack.len();
            let open = match moves(depth, len - step - 1, max_depth) {
                (true, true) => {
                    let p = reach.map_or(0.5, |r| 0.5 * r[step + 1][depth + 1] / r[step][depth]);
                    self.rng.gen_bool(p.clamp(0.0, 1.0))
                }
                (open, _) => open,
            };
            if open {
                let opener = vocab.opener(self.rng.gen_range(0..self.params.n_pairs));
                stack.push(opener);
                prefix.push(opener);
            } else {
                let opener = stack
                    .pop()
                    .expect("feasible() allows a close only above depth 0");
                prefix.push(vocab.closer_of(opener));
            }
        }
        let answer = stack.iter().rev().map(|&o| vocab.closer_of(o)).collect();
        Example { prefix, answer }
    }
}

/// The prefix lengths the generator draws from, uniformly: those a walk can end open at.
fn prefix_lengths(params: TaskParams) -> Vec<usize> {
    (params.min_len..=params.max_len)
        .filter(|&len| feasible(0, len, params.max_depth))
        .collect()
}

/// Whether a walk at `depth` with `remaining` steps after this one may open, and may close.
fn moves(depth: usize, remaining: usize, max_depth: usize) -> (bool, bool) {
    let can_open = depth < max_depth && feasible(depth + 1, remaining, max_depth);
    let can_close = depth > 0 && feasible(depth - 1, remaining, max_depth);
    (can_open, can_close)
}

/// The depths after one step of the generator's walk from `depth`, with their probabilities.
fn next_depths(
    depth: usize,
    remaining: usize,
    max_depth: usize,
) -> impl Iterator<Item = (usize, f64)> {
    let (can_open, can_close) = moves(depth, remaining, max_depth);
    let p = if can_open && can_close { 0.5 } else { 1.0 };
    [
        can_open.then(|| (depth + 1, p)),
        can_close.then(|| (depth - 1, p)),
    ]
    .into_iter()
    .flatten()
}

/// `reach[step][depth]`: the chance that the generator's walk of `len` brackets, at `depth`
/// before bracket `step`, ends at depth `end`.
fn reach(len: usize, end: usize, max_depth: usize) -> Vec<Vec<f64>> {
    let mut reach = vec![vec![0.0; max_depth + 2]; len + 1];
    reach[len][end] = 1.0;
    for step in (0..len).rev() {
        for depth in 0..=max_depth {
            reach[step][depth] = next_depths(depth, len - step - 1, max_depth)
                .map(|(next, p)| p * reach[step + 1][next])
                .sum();
        }
    }
    reach
}

/// How likely the generator's walk of `len` brackets is to end at each depth 0..=max_depth.
fn end_depths(len: usize, max_depth: usize) -> Vec<f64> {
    let mut at = vec![0.0; max_depth + 1];
    at[0] = 1.0;
    for step in 0..len {
        let mut next = vec![0.0; max_depth + 1];
        for (depth, &w) in at.iter().enumerate().filter(|(_, &w)| w > 0.0) {
            for (d, p) in next_depths(depth, len - step - 1, max_depth) {
                next[d] += w * p;
            }
        }
        at = next;
    }
    at
}

/// The task's share of each answer length (brackets left open), exactly.
pub fn answer_len_shares(params: TaskParams) -> Vec<f64> {
    shares(
        &end_depths_by_len(params, &prefix_lengths(params)),
        params.max_depth,
    )
}

/// [`end_depths`] for each of the generator's prefix lengths.
fn end_depths_by_len(params: TaskParams, lengths: &[usize]) -> Vec<Vec<f64>> {
    lengths
        .iter()
        .map(|&len| end_depths(len, params.max_depth))
        .collect()
}

/// Each answer length's share when the prefix lengths are drawn uniformly.
fn shares(by_len: &[Vec<f64>], max_depth: usize) -> Vec<f64> {
    let mut shares = vec![0.0; max_depth + 1];
    for ends in by_len {
        for (share, p) in shares.iter_mut().zip(ends) {
            *share += p / by_len.len() as f64;
        }
    }
    shares
}

/// What a balanced generator draws from: answer lengths at their balanced shares, and for
/// each answer length the task gives, the prefix lengths (indices into the generator's) in
/// proportion to how often the task gives that answer length at each.
struct Balance {
    answer_len: WeightedIndex<f64>,
    len_given: Vec<Option<WeightedIndex<f64>>>,
}

impl Balance {
    fn new(params: TaskParams, lengths: &[usize], strength: f64) -> Self {
        let by_len = end_depths_by_len(params, lengths);
        let target: Vec<f64> = shares(&by_len, params.max_depth)
            .iter()
            .map(|&p| if p > 0.0 { p.powf(1.0 - strength) } else { 0.0 })
            .collect();
        let len_given = (0..=params.max_depth)
            .map(|a| WeightedIndex::new(by_len.iter().map(|ends| ends[a])).ok())
            .collect();
        Self {
            answer_len: WeightedIndex::new(&target).expect("the task gives some answer length"),
            len_given,
        }
    }
}

/// Number of distinct prefixes the params allow (as f64: it overflows integers quickly).
pub fn count_prefixes(params: TaskParams) -> f64 {
    let k = params.n_pairs as f64;
    let mut ways = vec![0.0f64; params.max_depth + 1];
    ways[0] = 1.0;
    let mut total = 0.0;
    for len in 1..=params.max_len {
        let mut next = vec![0.0f64; params.max_depth + 1];
        for (depth, &w) in ways.iter().enumerate() {
            if depth < params.max_depth {
                next[depth + 1] += w * k;
            }
            if depth > 0 {
                next[depth - 1] += w;
            }
        }
        ways = next;
        if len >= params.min_len {
            total += ways[1..].iter().sum::<f64>();
        }
    }
    total
}

/// Draws `n` examples whose prefixes are new to `seen` (and adds them), or says why it can't.
pub fn draw_distinct(
    generator: &mut Generator,
    vocab: &Vocab,
    n: usize,
    seen: &mut HashSet<Vec<u32>>,
) -> Result<Vec<Example>, String> {
    let max_attempts = 50 * n + 10_000;
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0;
    while out.len() < n {
        if attempts == max_attempts {
            return Err(format!(
                "found only {} distinct prefixes of {n} requested after {attempts} draws",
                out.len()
            ));
        }
        attempts += 1;
        let example = generator.draw(vocab);
        if seen.insert(example.prefix.clone()) {
            out.push(example);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocab {
        Vocab::new(&[('(', ')'), ('【', '】'), ('{', '}')])
    }

    fn params() -> TaskParams {
        TaskParams {
            n_pairs: 3,
            min_len: 2,
            max_len: 20,
            max_depth: 6,
        }
    }

    /// Each answer length's share among `n` draws.
    fn answer_len_freqs(g: &mut Generator, v: &Vocab, n: usize, max_depth: usize) -> Vec<f64> {
        let mut counts = vec![0.0; max_depth + 1];
        for _ in 0..n {
            counts[g.sample(v).answer.len()] += 1.0 / n as f64;
        }
        counts
    }

    #[test]
    fn answer_len_shares_are_the_generators() {
        let v = vocab();
        let shares = answer_len_shares(params());
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(shares[0], 0.0);
        let freqs = answer_len_freqs(&mut Generator::new(params(), 5), &v, 40_000, 6);
        for (a, (s, f)) in shares.iter().zip(&freqs).enumerate() {
            assert!(
                (s - f).abs() < 0.01,
                "answer length {a}: share {s}, drawn {f}"
            );
        }
    }

    #[test]
    fn balanced_draws_give_answer_lengths_their_tempered_shares() {
        let v = vocab();
        let shares = answer_len_shares(params());
        for strength in [0.5, 1.0] {
            let mut g = Generator::new(params(), 9);
            g.balance(strength);
            let freqs = answer_len_freqs(&mut g, &v, 30_000, 6);
            let target: Vec<f64> = shares.iter().map(|p| p.powf(1.0 - strength)).collect();
            let total: f64 = target[1..].iter().sum();
            for a in 1..=6 {
                let want = target[a] / total;
                assert!(
                    (freqs[a] - want).abs() < 0.015,
                    "strength {strength}, answer length {a}: want {want}, drew {}",
                    freqs[a]
                );
            }
        }
        // And the draws are valid prefixes of the task.
        let mut g = Generator::new(params(), 3);
        g.balance(1.0);
        for _ in 0..2_000 {
            let e = g.sample(&v);
            assert_eq!(closing(&v, &e.prefix), Ok(e.answer.clone()));
            assert!((2..=20).contains(&e.prefix.len()));
            assert!(e.max_nesting(&v) <= 6);
        }
    }

    #[test]
    fn balancing_keeps_the_tasks_distribution_within_an_answer_length() {
        // A space small enough to count every prefix's frequency.
        let small = TaskParams {
            n_pairs: 1,
            min_len: 1,
            max_len: 7,
            max_depth: 3,
        };
        let v = Vocab::new(&[('(', ')')]);
        let conditional = |g: &mut Generator| {
            let mut counts: std::collections::HashMap<Vec<u32>, f64> = Default::default();
            let mut per_len = [0.0; 4];
            for _ in 0..200_000 {
                let e = g.sample(&v);
                per_len[e.answer.len()] += 1.0;
                *counts.entry(e.prefix).or_default() += 1.0;
            }
            let mut out: Vec<(Vec<u32>, f64)> = counts
                .into_iter()
                .map(|(prefix, c)| {
                    let a = closing(&v, &prefix).unwrap().len();
                    (prefix, c / per_len[a])
                })
                .collect();
            out.sort_by(|x, y| x.0.cmp(&y.0));
            out
        };
        let natural = conditional(&mut Generator::new(small, 1));
        let mut balanced = Generator::new(small, 2);
        balanced.balance(1.0);
        let balanced = conditional(&mut balanced);
        assert_eq!(
            natural.iter().map(|x| &x.0).collect::<Vec<_>>(),
            balanced.iter().map(|x| &x.0).collect::<Vec<_>>(),
            "the same prefixes are drawn"
        );
        for ((prefix, n), (_, b)) in natural.iter().zip(&balanced) {
            assert!((n - b).abs() < 0.01, "{prefix:?}: {n} against {b}");
        }
    }

    #[test]
    fn balance_zero_draws_the_tasks_own_examples() {
        let v = vocab();
        let mut plain = Generator::new(params(), 4);
        let mut reset = Generator::new(params(), 4);
        reset.balance(1.0);
        reset.balance(0.0);
        for _ in 0..100 {
            assert_eq!(plain.sample(&v), reset.sample(&v));
        }
    }

    #[test]
    fn every_example_plus_its_answer_is_balanced_and_within_bounds() {
        let v = vocab();
        for (seed, p) in [
            (1, params()),
            (
                2,
                TaskParams {
                    max_depth: 1,
                    min_len: 1,
                    max_len: 9,
                    n_pairs: 1,
                },
            ),
            (
                3,
                TaskParams {
                    max_depth: 30,
                    min_len: 50,
                    max_len: 100,
                    n_pairs: 4,
                },
            ),
        ] {
            let v = if p.n_pairs == 3 {
                v.clone()
            } else {
                Vocab::new(&[('(', ')'), ('[', ']'), ('{', '}'), ('<', '>')][..p.n_pairs])
            };
            let mut g = Generator::new(p, seed);
            for _ in 0..2000 {
                let e = g.sample(&v);
                assert!((p.min_len..=p.max_len).contains(&e.prefix.len()), "{e:?}");
                assert!(e.max_nesting(&v) <= p.max_depth, "{e:?}");
                assert!(!e.answer.is_empty());
                assert_eq!(closing(&v, &e.prefix), Ok(e.answer.clone()));
                let mut whole = e.prefix.clone();
                whole.extend(&e.answer);
                assert_eq!(closing(&v, &whole), Err(PrefixError::NothingOpen));
            }
        }
    }

    #[test]
    fn same_seed_same_examples_other_seed_other_examples() {
        let v = vocab();
        let draw = |seed| {
            let mut g = Generator::new(params(), seed);
            (0..100).map(|_| g.sample(&v)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn language_model_strings_are_open_prefixes_or_complete_sequences() {
        let v = vocab();
        let mut g = Generator::new(params(), 3).with_task(Task::Lm);
        let strings: Vec<Example> = (0..400).map(|_| g.draw(&v)).collect();
        let complete = strings
            .iter()
            .filter(|e| closing(&v, &e.prefix) == Err(PrefixError::NothingOpen))
            .count();
        let open = strings
            .iter()
            .filter(|e| closing(&v, &e.prefix).is_ok())
            .count();
        assert_eq!(complete + open, 400, "every string is valid");
        assert!(
            (150..=250).contains(&complete),
            "{complete} complete of 400"
        );
        for e in &strings {
            assert!(e.is_unlabelled());
            let record = e.record(&v);
            assert_eq!(record[0], v.input());
            assert_eq!(*record.last().unwrap(), v.end());
            assert!(!record.contains(&v.output()));
        }
    }

    #[test]
    fn closing_rejects_mismatches_and_closed_strings() {
        let v = vocab();
        let ids = v.encode("【()】{").unwrap();
        assert_eq!(v.decode(&closing(&v, &ids).unwrap()), "}");
        let ids = v.encode("【(】").unwrap();
        assert_eq!(
            closing(&v, &ids),
            Err(PrefixError::Unmatched { position: 2 })
        );
        let ids = v.encode("()").unwrap();
        assert_eq!(closing(&v, &ids), Err(PrefixError::NothingOpen));
    }

    #[test]
    fn counts_small_spaces_exactly() {
        // Length 1: 3 openers. Length 2: 9 double opens ("()" is closed).
        let p = TaskParams {
            n_pairs: 3,
            min_len: 1,
            max_len: 2,
            max_depth: 6,
        };
        assert_eq!(count_prefixes(p), 12.0);
        let p = TaskParams {
            n_pairs: 1,
            min_len: 3,
            max_len: 3,
            max_depth: 1,
        };
        assert_eq!(count_prefixes(p), 1.0, "only ()(");
    }

    #[test]
    fn draw_distinct_never_repeats_and_fails_cleanly_when_the_space_is_small() {
        let v = vocab();
        let mut g = Generator::new(params(), 3);
        let mut seen = HashSet::new();
        let a = draw_distinct(&mut g, &v, 500, &mut seen).unwrap();
        let b = draw_distinct(&mut g, &v, 500, &mut seen).unwrap();
        let prefixes: HashSet<_> = a.iter().chain(&b).map(|e| e.prefix.clone()).collect();
        assert_eq!(prefixes.len(), 1000);
        let tiny = TaskParams {
            n_pairs: 3,
            min_len: 1,
            max_len: 2,
            max_depth: 6,
        };
        let mut g = Generator::new(tiny, 3);
        let err = draw_distinct(&mut g, &v, 13, &mut HashSet::new()).unwrap_err();
        assert!(err.contains("found only 12"), "{err}");
    }
}

//! Rules in the loss ("NCL"): rules stated in words in the spec, each mapped to a
//! constraint the data side can compute, and added to the training loss as a
//! differentiable penalty: the probability mass the model puts, at each answer position,
//! on closers a rule forbids there, times `train.rule_weight`.
//!
//! - `kind = "pair"`, `pair = "【】"`: 】 closes 【 and nothing else. Where the innermost open
//!   bracket is 【, every other closer is forbidden; elsewhere, 】 is.
//! - `kind = "stack_order"`: close the innermost first. Every closer but the innermost open
//!   bracket's is forbidden; once all are closed (the final `,`), every closer is.

use crate::data::vocab::PAD;
use crate::data::{Example, Vocab};
use crate::spec::{Rule, RuleKind};
use burn::prelude::*;
use burn::tensor::activation::softmax;

/// The spec's rules, resolved to pair indices.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Pairs whose closer closes only their opener.
    pairs: Vec<usize>,
    stack_order: bool,
    pub weight: f64,
}

impl Rules {
    /// None when the spec states no rule. Pairs were checked against `data.pairs`.
    pub fn new(rules: &[Rule], vocab: &Vocab, weight: f64) -> Option<Self> {
        if rules.is_empty() {
            return None;
        }
        let index_of = |text: &str| {
            let mut cs = text.chars();
            let pair = (cs.next()?, cs.next()?);
            vocab.pairs().iter().position(|p| *p == pair)
        };
        Some(Self {
            pairs: rules
                .iter()
                .filter(|r| r.kind == RuleKind::Pair)
                .filter_map(|r| index_of(&r.pair))
                .collect(),
            stack_order: rules.iter().any(|r| r.kind == RuleKind::StackOrder),
            weight,
        })
    }

    /// Which closers are forbidden when `innermost` (a pair index) is the innermost open
    /// bracket, or when nothing is open (None): a row of vocab-size flags.
    fn forbidden(&self, innermost: Option<usize>, vocab: &Vocab, width: usize) -> Vec<f32> {
        let mut row = vec![0f32; width];
        let n = vocab.n_pairs();
        for pair in 0..n {
            let closer = vocab.closer(pair) as usize;
            let by_order = self.stack_order && innermost != Some(pair);
            let by_pair = match innermost {
                // Another pair's closer may not close the innermost, if its pair has a rule.
                Some(open) => {
                    pair != open && (self.pairs.contains(&open) || self.pairs.contains(&pair))
                }
                None => self.pairs.contains(&pair),
            };
            if by_order || by_pair {
                row[closer] = 1.0;
            }
        }
        row
    }

    /// The forbidden-closer flags [batch * len, vocabulary size] of every scored answer
    /// position of a batch (zero elsewhere), and how many positions are scored.
    /// `answer_ids` marks, in order along each row, the answer's closers and then its
    /// final `,`.
    pub fn flags(
        &self,
        examples: &[&Example],
        answer_ids: &[i64],
        len: usize,
        vocab: &Vocab,
    ) -> (Vec<f32>, usize) {
        let width = vocab.size();
        let mut flags = vec![0f32; answer_ids.len() * width];
        let mut scored = 0;
        for (row, example) in examples.iter().enumerate() {
            let marked = (row * len..(row + 1) * len).filter(|&i| answer_ids[i] != PAD as i64);
            for (k, i) in marked.enumerate() {
                // The k-th answer token closes the innermost open bracket; past the last
                // closer, nothing is open.
                let innermost = example
                    .answer
                    .get(k)
                    .map(|&closer| ((closer - 1) / 2) as usize);
                flags[i * width..(i + 1) * width]
                    .copy_from_slice(&self.forbidden(innermost, vocab, width));
                scored += 1;
            }
        }
        (flags, scored)
    }

    /// The mean over scored positions of the probability given to forbidden closers.
    /// logits [batch * len, outputs]; a model may have outputs beyond the vocabulary (ber's
    /// mask token), which no rule forbids.
    pub fn penalty(&self, logits: Tensor<2>, flags: Vec<f32>, scored: usize) -> Tensor<1> {
        let [rows, _] = logits.dims();
        let width = flags.len() / rows.max(1);
        let device = logits.device();
        let flags = Tensor::<2>::from_data(TensorData::new(flags, [rows, width]), &device);
        let probs = softmax(logits, 1).slice([0..rows, 0..width]);
        (probs * flags).sum() / scored.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocab {
        Vocab::new(&[('(', ')'), ('【', '】'), ('{', '}')])
    }

    fn rule(kind: RuleKind, pair: &str) -> Rule {
        Rule {
            text: "a rule".into(),
            kind,
            pair: pair.into(),
        }
    }

    #[test]
    fn each_rule_forbids_the_closers_it_names() {
        let v = vocab();
        let pair = Rules::new(&[rule(RuleKind::Pair, "【】")], &v, 1.0).unwrap();
        // 【 innermost: ) and } may not close it; ( innermost: 】 may not close it.
        assert_eq!(
            pair.forbidden(Some(1), &v, 10),
            vec![0., 0., 1., 0., 0., 0., 1., 0., 0., 0.]
        );
        assert_eq!(
            pair.forbidden(Some(0), &v, 10),
            vec![0., 0., 0., 0., 1., 0., 0., 0., 0., 0.]
        );
        let order = Rules::new(&[rule(RuleKind::StackOrder, "")], &v, 1.0).unwrap();
        assert_eq!(
            order.forbidden(Some(2), &v, 10),
            vec![0., 0., 1., 0., 1., 0., 0., 0., 0., 0.]
        );
        assert_eq!(
            order.forbidden(None, &v, 10),
            vec![0., 0., 1., 0., 1., 0., 1., 0., 0., 0.]
        );
    }

    /// Zero on a model that puts no mass on forbidden closers, positive otherwise.
    #[test]
    fn the_penalty_is_zero_only_without_mass_on_forbidden_closers() {
        let v = vocab();
        let rules = Rules::new(&[rule(RuleKind::StackOrder, "")], &v, 1.0).unwrap();
        // One row: prefix "(【", answer "】)"; positions 0..3 of a len-3 row are scored.
        let example = Example {
            prefix: vec![1, 3],
            answer: vec![4, 2],
        };
        let answer_ids = vec![4, 2, 9];
        let (flags, scored) = rules.flags(&[&example], &answer_ids, 3, &v);
        assert_eq!(scored, 3);
        let device = Device::flex();
        let logits_for = |rows: [[f32; 10]; 3]| {
            Tensor::<2>::from_data(TensorData::new(rows.concat(), [3, 10]), &device)
        };
        // All mass on the right token at each position (logits far apart).
        let mut right = [[-30f32; 10]; 3];
        right[0][4] = 30.0;
        right[1][2] = 30.0;
        right[2][9] = 30.0;
        let p = rules.penalty(logits_for(right), flags.clone(), scored);
        assert!(f64::from(p.into_scalar::<f32>()) < 1e-6);
        // Uniform: forbidden closers get their share.
        let uniform = rules.penalty(logits_for([[0f32; 10]; 3]), flags, scored);
        let value = f64::from(uniform.into_scalar::<f32>());
        // positions: 2 forbidden of 10, 2 of 10, 3 of 10 -> mean 7/30.
        assert!((value - 7.0 / 30.0).abs() < 1e-5, "{value}");
    }
}

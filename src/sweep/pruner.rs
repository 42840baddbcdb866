//! Pruners: decide at each evaluation whether a trial is hopeless, from the values the
//! other trials reported at the same evaluation index. Values here are losses (lower is
//! better); a maximised objective is negated before it gets here.

use crate::spec::{PrunerKind, SweepSpec};
use std::collections::HashMap;

pub struct Pruner {
    kind: PrunerKind,
    startup_trials: usize,
    warmup_evals: usize,
    reduction_factor: usize,
}

/// What other trials reported: per trial number, its value at each evaluation index.
pub type Intermediates = HashMap<u64, Vec<f64>>;

impl Pruner {
    pub fn new(sweep: &SweepSpec) -> Self {
        Self {
            kind: sweep.pruner,
            startup_trials: sweep.startup_trials,
            warmup_evals: sweep.prune_warmup_evals,
            reduction_factor: sweep.reduction_factor.max(2),
        }
    }

    /// False when no evaluation can ever be pruned: callers need not gather history.
    pub fn is_active(&self) -> bool {
        self.kind != PrunerKind::None
    }

    /// Should the trial whose values so far are `mine` stop? `finished` are the trials that
    /// completed (median), `all` every trial that reported (ASHA).
    pub fn should_prune(
        &self,
        mine: &[f64],
        finished: &Intermediates,
        all: &Intermediates,
    ) -> bool {
        let Some(&latest) = mine.last() else {
            return false;
        };
        let index = mine.len() - 1;
        if mine.len() < self.warmup_evals.max(1) || !latest.is_finite() {
            return false;
        }
        match self.kind {
            PrunerKind::None => false,
            PrunerKind::Median => self.median(mine, index, finished),
            PrunerKind::Asha => self.asha(latest, index, all),
        }
    }

    /// Worse than the median of finished trials' best-so-far at the same index.
    fn median(&self, mine: &[f64], index: usize, finished: &Intermediates) -> bool {
        if finished.len() < self.startup_trials {
            return false;
        }
        let mut others: Vec<f64> = finished
            .values()
            .filter(|v| v.len() > index)
            .map(|v| best_so_far(&v[..=index]))
            .collect();
        if others.is_empty() {
            return false;
        }
        others.sort_by(f64::total_cmp);
        let median = others[others.len() / 2];
        best_so_far(mine) > median
    }

    /// Asynchronous successive halving: at rung evaluations (warmup × η^k), continue only
    /// in the top 1/η of every value reported at that rung so far.
    fn asha(&self, latest: f64, index: usize, all: &Intermediates) -> bool {
        let eval_number = index + 1;
        if !self.is_rung(eval_number) {
            return false;
        }
        let mut at_rung: Vec<f64> = all
            .values()
            .filter(|v| v.len() > index)
            .map(|v| v[index])
            .collect();
        at_rung.push(latest);
        at_rung.sort_by(f64::total_cmp);
        let keep = at_rung.len().div_ceil(self.reduction_factor);
        latest > at_rung[keep - 1]
    }

    fn is_rung(&self, eval_number: usize) -> bool {
        let mut rung = self.warmup_evals.max(1);
        while rung < eval_number {
            rung *= self.reduction_factor;
        }
        rung == eval_number
    }
}

fn best_so_far(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pruner(kind: PrunerKind) -> Pruner {
        let sweep = SweepSpec {
            pruner: kind,
            startup_trials: 2,
            prune_warmup_evals: 2,
            reduction_factor: 3,
            ..SweepSpec::default()
        };
        Pruner::new(&sweep)
    }

    fn history(rows: &[&[f64]]) -> Intermediates {
        rows.iter()
            .enumerate()
            .map(|(i, v)| (i as u64, v.to_vec()))
            .collect()
    }

    #[test]
    fn median_prunes_only_the_worse_half_after_warmup_and_startup() {
        let p = pruner(PrunerKind::Median);
        let done = history(&[&[0.9, 0.5, 0.2], &[0.8, 0.4, 0.3], &[0.7, 0.6, 0.5]]);
        assert!(!p.should_prune(&[5.0], &done, &done), "warm-up");
        assert!(p.should_prune(&[0.9, 0.7], &done, &done));
        assert!(!p.should_prune(&[0.9, 0.45], &done, &done));
        let one = history(&[&[0.1, 0.1]]);
        assert!(!p.should_prune(&[0.9, 0.9], &one, &one), "startup trials");
        assert!(!pruner(PrunerKind::None).should_prune(&[9.0, 9.0], &done, &done));
    }

    #[test]
    fn asha_keeps_the_top_third_at_rungs_only() {
        let p = pruner(PrunerKind::Asha);
        let all = history(&[
            &[0.5, 0.5],
            &[0.4, 0.4],
            &[0.3, 0.3],
            &[0.2, 0.2],
            &[0.1, 0.1],
        ]);
        // Rung at the 2nd evaluation: 6 values, keep 2: 0.1 and the candidate if better than 0.2.
        assert!(p.should_prune(&[0.9, 0.35], &HashMap::new(), &all));
        assert!(!p.should_prune(&[0.9, 0.15], &HashMap::new(), &all));
        // The 3rd evaluation is not a rung (rungs: 2, 6, 18, ...).
        assert!(!p.should_prune(&[0.9, 0.9, 0.9], &HashMap::new(), &all));
        assert!(p.is_rung(6) && p.is_rung(18) && !p.is_rung(7));
    }
}

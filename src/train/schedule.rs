//! Learning rate: linear warm-up, then cosine or linear decay to `min_lr_ratio * lr`.
//!
//! Written here rather than with burn's step-based schedulers because progress is measured
//! in steps only when `max_steps` is set; under a time budget it is the fraction of the
//! budget used, which no step-based scheduler can know in advance.

use crate::spec::{LrDecay, TrainSpec};

#[derive(Debug, Clone)]
pub struct Schedule {
    lr: f64,
    warmup_steps: u64,
    decay: LrDecay,
    min_ratio: f64,
}

impl Schedule {
    pub fn new(spec: &TrainSpec) -> Self {
        Self {
            lr: spec.lr,
            warmup_steps: spec.warmup_steps,
            decay: spec.lr_decay,
            min_ratio: spec.min_lr_ratio,
        }
    }

    /// Learning rate at `step` (0-based), with `progress` in [0, 1] through the run.
    pub fn lr(&self, step: u64, progress: f64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let p = progress.clamp(0.0, 1.0);
        let factor = match self.decay {
            LrDecay::None => 1.0,
            LrDecay::Linear => 1.0 - (1.0 - self.min_ratio) * p,
            LrDecay::Cosine => {
                self.min_ratio
                    + (1.0 - self.min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        };
        self.lr * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_the_floor() {
        let spec = TrainSpec {
            lr: 1.0,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            ..TrainSpec::default()
        };
        let s = Schedule::new(&spec);
        assert!((s.lr(0, 0.0) - 0.1).abs() < 1e-12);
        assert!((s.lr(9, 0.0) - 1.0).abs() < 1e-12);
        assert!((s.lr(100, 0.0) - 1.0).abs() < 1e-12);
        assert!((s.lr(100, 0.5) - 0.55).abs() < 1e-12);
        assert!((s.lr(100, 1.0) - 0.1).abs() < 1e-12);
        assert!((s.lr(100, 7.0) - 0.1).abs() < 1e-12, "clamped past the end");
    }
}

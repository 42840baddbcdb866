//! One AdamW step on a parameter in one pass. burn's `AdamW` runs it as ~15 tensor
//! operations per parameter (each a pass with its own buffer); at these model sizes a
//! parameter has a few thousand values, so the step was the operations' overhead: 1.2-1.5 ms
//! of a ~8 ms training step of tra_1min (docs/benchmarks.md, issue 11, eighth part).
//!
//! The arithmetic is burn-optim 0.22.1's (`optim/adamw.rs`), operation for operation in f32
//! with the same roundings, so a step gives the same bits as burn's (tested):
//! m₁ ← β₁m₁ + (1−β₁)g, m₂ ← β₂m₂ + (1−β₂)g², Δ = (m₁/(1−β₁ᵗ)) / (√(m₂/(1−β₂ᵗ)) + ε),
//! θ ← θ·(1 − lr·λ) − lr·Δ.
//!
//! With `max_norm`, g is first scaled as burn's `GradientClipping::Norm` scales it, by
//! min(1, max_norm / (‖g‖ + f32::MIN_POSITIVE)) per parameter; ‖g‖ is summed here in 16
//! running lanes (math::sum_by), not in burn-flex's order, so a clipped step can differ from
//! burn's in the last bits (tested within 1e-6).

use super::math::{sum_by, with_simd};

/// The optimiser's constants.
#[derive(Clone, Copy, Debug)]
pub struct Hyper {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    /// The largest gradient norm per parameter, or none.
    pub max_norm: Option<f32>,
}

/// Step number `time` (1 for the first, whose moments start from zero) at learning rate
/// `lr`: updates `param`, `m1` and `m2` in place from `grad`.
pub fn step(
    h: Hyper,
    lr: f64,
    time: i32,
    param: &mut [f32],
    grad: &[f32],
    m1: &mut [f32],
    m2: &mut [f32],
) {
    let n = param.len();
    assert!(grad.len() == n && m1.len() == n && m2.len() == n && time >= 1);
    let (f1, f2) = (1.0 - h.beta_1, 1.0 - h.beta_2);
    let c1 = 1f32 - h.beta_1.powi(time);
    let c2 = 1f32 - h.beta_2.powi(time);
    let decay_rate = lr * f64::from(h.weight_decay);
    // burn skips the multiplication when there is no decay; 1·θ is θ anyway.
    let keep = if decay_rate == 0.0 {
        1.0
    } else {
        (1.0 - decay_rate) as f32
    };
    let lr = lr as f32;
    let first = time == 1;
    with_simd(
        #[inline(always)]
        || {
            let scale = h.max_norm.map(|max| {
                let norm = sum_by(grad, |v| v * v).sqrt();
                (max / (norm + f32::MIN_POSITIVE)).min(1.0)
            });
            for (((p, &g), a), b) in param.iter_mut().zip(grad).zip(m1).zip(m2) {
                let g = scale.map_or(g, |s| g * s);
                // burn's first step sets the moments from g alone (0 + x would turn −0 into +0).
                if first {
                    *a = g * f1;
                    *b = (g * g) * f2;
                } else {
                    *a = *a * h.beta_1 + g * f1;
                    *b = *b * h.beta_2 + (g * g) * f2;
                }
                let delta = (*a / c1) / ((*b / c2).sqrt() + h.epsilon);
                *p = *p * keep - delta * lr;
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    const H: Hyper = Hyper {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.01,
        max_norm: None,
    };

    /// The textbook update in f64, from moments that start at zero.
    fn reference(steps: &[Vec<f32>], p0: &[f32], lr: f64) -> Vec<f64> {
        let (b1, b2) = (f64::from(H.beta_1), f64::from(H.beta_2));
        let mut p: Vec<f64> = p0.iter().map(|&v| f64::from(v)).collect();
        let mut m1 = vec![0.0; p.len()];
        let mut m2 = vec![0.0; p.len()];
        for (t, g) in steps.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..p.len() {
                let g = f64::from(g[i]);
                m1[i] = b1 * m1[i] + (1.0 - b1) * g;
                m2[i] = b2 * m2[i] + (1.0 - b2) * g * g;
                let delta = (m1[i] / (1.0 - b1.powi(t)))
                    / ((m2[i] / (1.0 - b2.powi(t))).sqrt() + f64::from(H.epsilon));
                p[i] = p[i] * (1.0 - lr * f64::from(H.weight_decay)) - lr * delta;
            }
        }
        p
    }

    #[test]
    fn follows_the_update_rule_over_steps() {
        let (n, lr) = (37, 3e-3);
        let p0 = values(n, 1, 2.0);
        let steps: Vec<Vec<f32>> = (0..5).map(|s| values(n, 10 + s, 0.5)).collect();
        let (mut p, mut m1, mut m2) = (p0.clone(), vec![0.0; n], vec![0.0; n]);
        for (t, g) in steps.iter().enumerate() {
            step(H, lr, t as i32 + 1, &mut p, g, &mut m1, &mut m2);
        }
        let want = reference(&steps, &p0, lr);
        for (i, (&got, want)) in p.iter().zip(want).enumerate() {
            assert!((f64::from(got) - want).abs() < 1e-6, "{i}: {got} vs {want}");
        }
    }

    #[test]
    fn clipping_scales_a_long_gradient_to_the_norm() {
        let n = 8;
        let g = vec![3.0; n]; // norm 3·√8
        let max = 0.5;
        let h = Hyper {
            max_norm: Some(max),
            ..H
        };
        let (mut p, mut m1, mut m2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        step(h, 1e-3, 1, &mut p, &g, &mut m1, &mut m2);
        let clipped = 3.0 * max / (3.0 * (n as f32).sqrt());
        for &m in &m1 {
            assert!((m - clipped * (1.0 - H.beta_1)).abs() < 1e-7, "{m}");
        }
        // A gradient inside the norm is left as it is.
        let (mut q, mut k1, mut k2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let small = vec![0.01; n];
        step(h, 1e-3, 1, &mut q, &small, &mut k1, &mut k2);
        assert!(k1.iter().all(|&m| m == 0.01 * (1.0 - H.beta_1)));
    }

    #[test]
    fn no_decay_leaves_the_decay_out() {
        let h = Hyper {
            weight_decay: 0.0,
            ..H
        };
        let n = 9;
        let (mut p, mut m1, mut m2) = (values(n, 2, 2.0), vec![0.0; n], vec![0.0; n]);
        let before = p.clone();
        step(h, 1e-2, 1, &mut p, &vec![0.0; n], &mut m1, &mut m2);
        // A zero gradient moves nothing when there is no decay.
        assert_eq!(p, before);
    }
}

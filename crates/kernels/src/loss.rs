//! Cross-entropy over logits, forward and backward by hand, as burn's `CrossEntropyLoss`
//! computes it with a pad token and optional label smoothing α: for each row i whose target
//! t_i is not the pad, loss_i = −Σ_c q_c log softmax(x_i)_c with q = (1 − α)·onehot(t_i) +
//! α / V; the result is the mean over those rows. Composed under autodiff this is a
//! log-softmax (a libm `exp` per logit), a gather or a scatter, two masks and the
//! reductions, each with its buffer; here one pass per row.
//!
//! The gradient of the mean is (softmax(x_i) − q) / n for a scored row, 0 for a pad row.

use super::math::{softmax_in_place, with_simd};

/// The sizes and settings of one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dims {
    pub rows: usize,
    pub classes: usize,
    /// The target that marks a row as not scored.
    pub pad: i64,
    /// Label smoothing α (0: none).
    pub smoothing: f32,
}

impl Dims {
    fn scored(&self, target: i64) -> bool {
        target != self.pad
    }
}

/// The mean loss over the scored rows (NaN when there are none, as burn gives) and every
/// row's softmax (for the backward pass).
pub fn forward(d: Dims, logits: &[f32], targets: &[i64]) -> (f32, Vec<f32>) {
    check(&d, logits, targets);
    let mut probs = vec![0.0; logits.len()];
    let (mut sum, mut scored) = (0.0f64, 0usize);
    with_simd(
        #[inline(always)]
        || {
            let rows = logits
                .chunks_exact(d.classes)
                .zip(probs.chunks_exact_mut(d.classes));
            for ((x, p), &t) in rows.zip(targets) {
                let lse = softmax(x, p);
                if d.scored(t) {
                    sum += row_loss(&d, x, t as usize, lse);
                    scored += 1;
                }
            }
        },
    );
    ((sum / scored as f64) as f32, probs)
}

/// The gradient of the logits, from the loss's gradient `grad` (a scalar).
pub fn backward(d: Dims, probs: &[f32], targets: &[i64], grad: f32) -> Vec<f32> {
    check(&d, probs, targets);
    let scored = targets.iter().filter(|&&t| d.scored(t)).count();
    let scale = grad / scored as f32;
    let mut dx = vec![0.0; probs.len()];
    let spread = d.smoothing / d.classes as f32;
    with_simd(
        #[inline(always)]
        || {
            let rows = dx
                .chunks_exact_mut(d.classes)
                .zip(probs.chunks_exact(d.classes));
            for ((g, p), &t) in rows.zip(targets) {
                if !d.scored(t) {
                    continue;
                }
                for (g, &p) in g.iter_mut().zip(p) {
                    *g = (p - spread) * scale;
                }
                g[t as usize] -= (1.0 - d.smoothing) * scale;
            }
        },
    );
    dx
}

fn check(d: &Dims, values: &[f32], targets: &[i64]) {
    assert!(d.classes > 0, "cross-entropy over no classes");
    assert_eq!(
        (values.len(), targets.len()),
        (d.rows * d.classes, d.rows),
        "cross-entropy inputs disagree with {d:?}"
    );
    let bad = targets
        .iter()
        .find(|&&t| d.scored(t) && !(0..d.classes as i64).contains(&t));
    assert!(
        bad.is_none(),
        "cross-entropy target {bad:?} outside 0..{}",
        d.classes
    );
}

/// Writes softmax(x) into `p`; returns log Σ e^x.
#[inline(always)]
fn softmax(x: &[f32], p: &mut [f32]) -> f64 {
    p.copy_from_slice(x);
    let (max, sum) = softmax_in_place(p);
    max as f64 + (sum as f64).ln()
}

/// −Σ_c q_c (x_c − lse) = lse − Σ_c q_c x_c, since q sums to 1.
#[inline(always)]
fn row_loss(d: &Dims, x: &[f32], target: usize, lse: f64) -> f64 {
    let alpha = d.smoothing as f64;
    let mean: f64 = x.iter().map(|&v| v as f64).sum::<f64>() / d.classes as f64;
    lse - (1.0 - alpha) * x[target] as f64 - alpha * mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradients, values};

    const PAD: i64 = 0;

    fn dims(smoothing: f32) -> Dims {
        Dims {
            rows: 7,
            classes: 5,
            pad: PAD,
            smoothing,
        }
    }

    /// Rows 2 and 5 are padding.
    fn targets() -> Vec<i64> {
        vec![3, 1, PAD, 4, 2, PAD, 1]
    }

    /// The loss in f64 straight from its definition.
    fn naive(d: &Dims, x: &[f32], targets: &[i64]) -> f64 {
        let (mut sum, mut n) = (0.0, 0);
        for (row, &t) in x.chunks(d.classes).zip(targets) {
            if t == d.pad {
                continue;
            }
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            for (c, &v) in row.iter().enumerate() {
                let q = (1.0 - d.smoothing as f64) * f64::from(c as i64 == t)
                    + d.smoothing as f64 / d.classes as f64;
                sum -= q * (v as f64 - lse);
            }
            n += 1;
        }
        sum / n as f64
    }

    #[test]
    fn loss_matches_its_definition_and_gradients_central_differences() {
        for smoothing in [0.0, 0.1] {
            let d = dims(smoothing);
            let x = values(d.rows * d.classes, 7, 8.0);
            let (loss, probs) = forward(d, &x, &targets());
            let want = naive(&d, &x, &targets());
            assert!((loss as f64 - want).abs() < 1e-5, "{loss} vs {want}");
            let dx = backward(d, &probs, &targets(), 1.5);
            let pad_rows = [2, 5];
            for r in pad_rows {
                assert!(dx[r * d.classes..][..d.classes].iter().all(|&g| g == 0.0));
            }
            let inputs = vec![x];
            assert_gradients(&inputs, &[&dx], |a| 1.5 * naive(&d, &a[0], &targets()));
        }
    }

    #[test]
    fn every_row_padded_gives_nan_as_burn_does() {
        let d = dims(0.0);
        let (loss, _) = forward(d, &values(35, 1, 1.0), &[PAD; 7]);
        assert!(loss.is_nan());
    }
}

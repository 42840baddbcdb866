//! A linear probe: ridge regression from a representation (hidden state or residual
//! stream) to a number (the nesting depth), fitted on some positions and scored by R² on
//! others. Small dense systems (d ≤ a few hundred), solved by Cholesky.

/// A fitted probe: y ≈ w·(x − mean_x) + mean_y.
#[derive(Debug, Clone)]
pub struct Probe {
    mean_x: Vec<f64>,
    mean_y: f64,
    w: Vec<f64>,
}

/// Ridge penalty, relative to the mean diagonal of the features' covariance: enough to
/// keep a rank-deficient system (units that never move) solvable, too little to bias
/// a probe that fits.
const RIDGE: f64 = 1e-3;

impl Probe {
    /// Fits on rows `x` (all of one width) and targets `y`; None with fewer than two rows.
    pub fn fit(x: &[Vec<f32>], y: &[f64]) -> Option<Probe> {
        let (n, d) = (x.len(), x.first()?.len());
        if n < 2 || y.len() != n {
            return None;
        }
        let mean_x: Vec<f64> = (0..d)
            .map(|j| x.iter().map(|r| r[j] as f64).sum::<f64>() / n as f64)
            .collect();
        let mean_y = y.iter().sum::<f64>() / n as f64;
        let mut a = vec![vec![0.0; d]; d];
        let mut b = vec![0.0; d];
        for (row, &t) in x.iter().zip(y) {
            let c: Vec<f64> = row
                .iter()
                .zip(&mean_x)
                .map(|(&v, m)| v as f64 - m)
                .collect();
            for i in 0..d {
                b[i] += c[i] * (t - mean_y);
                for j in 0..=i {
                    a[i][j] += c[i] * c[j];
                }
            }
        }
        let scale = (0..d).map(|i| a[i][i]).sum::<f64>() / d as f64;
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += RIDGE * scale.max(1e-12);
        }
        let w = cholesky_solve(a, b)?;
        Some(Probe { mean_x, mean_y, w })
    }

    pub fn predict(&self, x: &[f32]) -> f64 {
        self.mean_y
            + x.iter()
                .zip(&self.mean_x)
                .zip(&self.w)
                .map(|((&v, m), w)| (v as f64 - m) * w)
                .sum::<f64>()
    }
}

/// The coefficient of determination of `predicted` against `truth`: 1 is perfect, 0 is no
/// better than the mean, below 0 worse.
pub fn r_squared(truth: &[f64], predicted: &[f64]) -> f64 {
    let mean = truth.iter().sum::<f64>() / truth.len().max(1) as f64;
    let total: f64 = truth.iter().map(|t| (t - mean).powi(2)).sum();
    let residual: f64 = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| (t - p).powi(2))
        .sum();
    if total == 0.0 {
        return if residual == 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - residual / total
}

/// Solves A w = b for a symmetric positive definite A given by its lower triangle.
fn cholesky_solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let d = b.len();
    for j in 0..d {
        let diag = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        if diag <= 0.0 || !diag.is_finite() {
            return None;
        }
        a[j][j] = diag.sqrt();
        for i in j + 1..d {
            let s = a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>();
            a[i][j] = s / a[j][j];
        }
    }
    for i in 0..d {
        b[i] = (b[i] - (0..i).map(|k| a[i][k] * b[k]).sum::<f64>()) / a[i][i];
    }
    for i in (0..d).rev() {
        b[i] = (b[i] - (i + 1..d).map(|k| a[k][i] * b[k]).sum::<f64>()) / a[i][i];
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_linear_target_is_recovered_and_noise_is_not() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let rows: Vec<Vec<f32>> = (0..400)
            .map(|_| (0..6).map(|_| rng.gen_range(-1.0..1.0)).collect())
            .collect();
        let linear: Vec<f64> = rows
            .iter()
            .map(|r| 2.0 * r[0] as f64 - 0.5 * r[3] as f64 + 3.0)
            .collect();
        let (fit, test) = rows.split_at(300);
        let probe = Probe::fit(fit, &linear[..300]).unwrap();
        let predicted: Vec<f64> = test.iter().map(|r| probe.predict(r)).collect();
        assert!(r_squared(&linear[300..], &predicted) > 0.999);
        let noise: Vec<f64> = (0..400).map(|_| rng.gen_range(0.0..1.0)).collect();
        let probe = Probe::fit(fit, &noise[..300]).unwrap();
        let predicted: Vec<f64> = test.iter().map(|r| probe.predict(r)).collect();
        assert!(r_squared(&noise[300..], &predicted) < 0.1);
    }

    #[test]
    fn constant_units_do_not_break_the_fit() {
        let rows: Vec<Vec<f32>> = (0..50).map(|i| vec![i as f32, 0.0, 1.0]).collect();
        let y: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let probe = Probe::fit(&rows, &y).unwrap();
        assert!((probe.predict(&[10.0, 0.0, 1.0]) - 10.0).abs() < 0.1);
    }
}

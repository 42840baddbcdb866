//! Matrix products on raw f32 slices through the `gemm` crate (the one burn-flex uses),
//! with bounds checked before the unsafe call.

/// A row-major or transposed view of a matrix inside a slice: element (i, j) is at
/// `offset + i·row_stride + j·col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub rows: usize,
    pub cols: usize,
    pub offset: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl View {
    /// A dense row-major matrix.
    pub fn dense(rows: usize, cols: usize) -> Self {
        Self::strided(rows, cols, 0, cols)
    }

    /// Rows `row_stride` apart starting at `offset`, each contiguous.
    pub fn strided(rows: usize, cols: usize, offset: usize, row_stride: usize) -> Self {
        Self {
            rows,
            cols,
            offset,
            row_stride,
            col_stride: 1,
        }
    }

    /// The same elements read as the transposed matrix.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// One past the last element read.
    fn end(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return self.offset;
        }
        self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }
}

/// dst = a·b, or dst += a·b when `accumulate`. Single-threaded: callers split work.
pub fn matmul(
    dst: &mut [f32],
    d: View,
    a: &[f32],
    av: View,
    b: &[f32],
    bv: View,
    accumulate: bool,
) {
    assert!(
        av.cols == bv.rows && d.rows == av.rows && d.cols == bv.cols,
        "matmul shapes: {d:?} = {av:?} x {bv:?}"
    );
    assert!(d.end() <= dst.len() && av.end() <= a.len() && bv.end() <= b.len());
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    // SAFETY: every element read or written lies inside its slice (asserted above), and
    // `dst` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            av.cols,
            dst.as_mut_ptr().add(d.offset),
            d.col_stride as isize,
            d.row_stride as isize,
            accumulate,
            a.as_ptr().add(av.offset),
            av.col_stride as isize,
            av.row_stride as isize,
            b.as_ptr().add(bv.offset),
            bv.col_stride as isize,
            bv.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], av: View, b: &[f32], bv: View) -> Vec<f32> {
        let at = |s: &[f32], v: View, i: usize, j: usize| {
            s[v.offset + i * v.row_stride + j * v.col_stride]
        };
        let mut out = vec![0.0; av.rows * bv.cols];
        for i in 0..av.rows {
            for j in 0..bv.cols {
                out[i * bv.cols + j] = (0..av.cols)
                    .map(|k| at(a, av, i, k) * at(b, bv, k, j))
                    .sum();
            }
        }
        out
    }

    #[test]
    fn strided_and_transposed_products_match_a_naive_loop() {
        let a: Vec<f32> = (0..60).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..48).map(|i| (i as f32 * 0.11).cos()).collect();
        // a: rows 0, 2, 4 of a [6, 10] buffer, 4 columns from column 1; b: [6, 8] transposed.
        let av = View::strided(3, 4, 1, 20);
        let bv = View::dense(4, 6);
        let bt = View::dense(6, 8).t(); // [8, 6]
        let mut d = vec![0.0; 3 * 6];
        matmul(&mut d, View::dense(3, 6), &a, av, &b, bv, false);
        let want = naive(&a, av, &b, bv);
        assert!(d.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
        let av2 = View::strided(3, 8, 0, 10);
        let mut d2 = vec![1.0; 3 * 6];
        matmul(&mut d2, View::dense(3, 6), &a, av2, &b, bt, true);
        let want2 = naive(&a, av2, &b, bt);
        assert!(d2
            .iter()
            .zip(&want2)
            .all(|(x, y)| (x - 1.0 - y).abs() < 1e-5));
    }
}

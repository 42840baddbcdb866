//! Reports from scored predictions: the summary with a breakdown by answer length, `eval.csv`,
//! and `report.txt` in the origin project's words.

use super::Prediction;
use crate::artifacts::{write_atomic, write_csv};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LengthRow {
    pub answer_len: usize,
    pub correct: usize,
    pub total: usize,
    pub exact: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalReport {
    pub exact: f64,
    pub correct: usize,
    pub total: usize,
    /// Exact match by the number of closers in the expected answer.
    pub by_answer_len: Vec<LengthRow>,
}

impl EvalReport {
    pub fn from_predictions(predictions: &[Prediction]) -> Self {
        let mut by_len: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for p in predictions {
            let entry = by_len.entry(p.expected.chars().count()).or_default();
            entry.0 += usize::from(p.correct);
            entry.1 += 1;
        }
        let correct = predictions.iter().filter(|p| p.correct).count();
        Self {
            exact: ratio(correct, predictions.len()),
            correct,
            total: predictions.len(),
            by_answer_len: by_len
                .into_iter()
                .map(|(answer_len, (correct, total))| LengthRow {
                    answer_len,
                    correct,
                    total,
                    exact: ratio(correct, total),
                })
                .collect(),
        }
    }

    /// The last line users grep for: `exact: 0.9870 (987/1000)`.
    pub fn headline(&self) -> String {
        format!("exact: {:.4} ({}/{})", self.exact, self.correct, self.total)
    }

    pub fn table(&self) -> String {
        let mut out = String::from("answer_len  correct  total  exact\n");
        for row in &self.by_answer_len {
            let _ = writeln!(
                out,
                "{:>10}  {:>7}  {:>5}  {:>11.4}",
                row.answer_len, row.correct, row.total, row.exact
            );
        }
        out
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Writes `eval.csv` and `report.txt` into `dir`.
pub fn write_outputs(dir: &Path, predictions: &[Prediction], report: &EvalReport) -> Result<()> {
    write_csv(&dir.join("eval.csv"), predictions)?;
    let mut text = String::new();
    for (i, p) in predictions.iter().enumerate() {
        let verdict = if p.correct { "正解" } else { "不正解" };
        let _ = writeln!(text, "問題{} {verdict}", i + 1);
        let _ = writeln!(text, "  入力: {}", p.input);
        let _ = writeln!(text, "  予測: {}", p.predicted);
        let _ = writeln!(text, "  正解: {}", p.expected);
    }
    let _ = writeln!(
        text,
        "正解率: {:.2}% ({}/{})",
        100.0 * report.exact,
        report.correct,
        report.total
    );
    write_atomic(&dir.join("report.txt"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(expected: &str, predicted: &str) -> Prediction {
        Prediction {
            input: "x".into(),
            expected: expected.into(),
            predicted: predicted.into(),
            correct: expected == predicted,
        }
    }

    #[test]
    fn breaks_down_by_answer_length_counting_characters() {
        let r = EvalReport::from_predictions(&[p("】", "】"), p("}】", "】}"), p("))", "))")]);
        assert_eq!(r.headline(), "exact: 0.6667 (2/3)");
        assert_eq!(r.by_answer_len.len(), 2);
        assert_eq!(
            (r.by_answer_len[1].answer_len, r.by_answer_len[1].correct),
            (2, 1)
        );
    }
}

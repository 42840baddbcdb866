//! The evaluation suite: in-distribution examples, examples twice as long as training's
//! longest, examples deeper than training's deepest, and any `--data` files; exact match per
//! set and broken down by answer length and nesting depth. It shows which models learned the
//! rule and which only memorised lengths.

use super::{predict, Prediction};
use crate::artifacts::write_atomic;
use crate::data::dataset::params;
use crate::data::task::{Generator, TaskParams};
use crate::data::{Example, Vocab};
use crate::model::Model;
use crate::spec::Spec;
use burn::prelude::Device;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// A named set of examples.
pub struct EvalSet {
    pub name: String,
    pub examples: Vec<Example>,
}

/// One set's result, or why it could not be scored.
pub struct SetResult {
    pub name: String,
    pub scored: Vec<(Example, Prediction)>,
    /// Examples the model cannot read (longer than its positional table).
    pub unreadable: usize,
    pub total: usize,
    pub limit: Option<usize>,
}

/// The generated sets for a spec: `n` examples each.
pub fn generated_sets(spec: &Spec, vocab: &Vocab, n: usize, seed: u64) -> Vec<EvalSet> {
    let base = params(spec);
    let in_dist = draw(base, vocab, n, seed, |_| true);
    let longer = TaskParams {
        min_len: base.max_len + 1,
        max_len: 2 * base.max_len,
        ..base
    };
    let longer = draw(longer, vocab, n, seed ^ 1, |_| true);
    let deeper = TaskParams {
        min_len: base.min_len.max(base.max_depth + 1),
        max_len: base.max_len.max(2 * (base.max_depth + 1)),
        max_depth: 2 * base.max_depth,
        ..base
    };
    let train_depth = base.max_depth;
    let deeper = draw(deeper, vocab, n, seed ^ 2, |e| {
        e.max_nesting(vocab) > train_depth
    });
    vec![
        EvalSet {
            name: "in_distribution".into(),
            examples: in_dist,
        },
        EvalSet {
            name: format!("longer (len {}-{})", base.max_len + 1, 2 * base.max_len),
            examples: longer,
        },
        EvalSet {
            name: format!("deeper (depth > {train_depth})"),
            examples: deeper,
        },
    ]
}

/// Up to `n` examples passing `keep`; rejection sampling with a bounded number of draws.
fn draw(
    p: TaskParams,
    vocab: &Vocab,
    n: usize,
    seed: u64,
    keep: impl Fn(&Example) -> bool,
) -> Vec<Example> {
    let mut generator = Generator::new(p, seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..(n * 200).max(1000) {
        if out.len() == n {
            break;
        }
        let e = generator.sample(vocab);
        if keep(&e) {
            out.push(e);
        }
    }
    out
}

/// Scores each set; examples beyond the model's positional table are counted, not run.
pub fn run(
    model: &Model,
    spec: &Spec,
    vocab: &Vocab,
    sets: Vec<EvalSet>,
    device: &Device,
) -> Vec<SetResult> {
    let limit = crate::model::position_limit(spec);
    sets.into_iter()
        .map(|set| {
            let total = set.examples.len();
            let longest = set
                .examples
                .iter()
                .map(|e| e.answer.len() + 1)
                .max()
                .unwrap_or(1);
            let max_new = crate::model::answer_budget(spec, longest.max(spec.max_answer_len()));
            let (readable, unreadable): (Vec<Example>, Vec<Example>) = set
                .examples
                .into_iter()
                .partition(|e| crate::model::fits(spec, e, max_new));
            let predictions = predict(model, &readable, vocab, max_new, device);
            SetResult {
                name: set.name,
                scored: readable.into_iter().zip(predictions).collect(),
                unreadable: unreadable.len(),
                total,
                limit,
            }
        })
        .collect()
}

impl SetResult {
    /// "n/a" text when nothing could be scored, or a note on the part that could not.
    pub fn note(&self) -> String {
        if self.unreadable == 0 {
            return String::new();
        }
        let limit = self.limit.unwrap_or(0);
        if self.scored.is_empty() {
            format!("n/a: every input needs more than the {limit} positions the model reads")
        } else {
            format!(
                "{} of {} inputs need more than {limit} positions: not scored",
                self.unreadable, self.total
            )
        }
    }

    fn correct(&self) -> usize {
        self.scored.iter().filter(|(_, p)| p.correct).count()
    }

    fn breakdown(
        &self,
        vocab: &Vocab,
        by: fn(&Example, &Vocab) -> usize,
    ) -> BTreeMap<usize, (usize, usize)> {
        let mut out: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for (e, p) in &self.scored {
            let entry = out.entry(by(e, vocab)).or_default();
            entry.0 += usize::from(p.correct);
            entry.1 += 1;
        }
        out
    }
}

fn answer_len(e: &Example, _: &Vocab) -> usize {
    e.answer.len()
}

fn depth(e: &Example, vocab: &Vocab) -> usize {
    e.max_nesting(vocab)
}

fn ratio(a: usize, b: usize) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.4}", a as f64 / b as f64)
    }
}

/// Writes `eval_suite.csv` (set, breakdown, group, correct, total, exact, note) and
/// `eval_suite.md`; returns the Markdown.
pub fn write(dir: &Path, results: &[SetResult], vocab: &Vocab) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "set",
        "breakdown",
        "group",
        "correct",
        "total",
        "exact",
        "note",
    ])?;
    let mut md = String::from("# Evaluation suite\n\n| set | exact match | correct | scored | note |\n|---|---|---|---|---|\n");
    for r in results {
        let scored = r.scored.len();
        let exact = if scored == 0 {
            "n/a".to_string()
        } else {
            ratio(r.correct(), scored)
        };
        w.write_record([
            r.name.as_str(),
            "all",
            "",
            &r.correct().to_string(),
            &scored.to_string(),
            &exact,
            &r.note(),
        ])?;
        let _ = writeln!(
            md,
            "| {} | {exact} | {} | {scored} | {} |",
            r.name,
            r.correct(),
            r.note()
        );
    }
    for (title, by) in [
        ("answer length", answer_len as fn(&Example, &Vocab) -> usize),
        ("nesting depth", depth),
    ] {
        let _ = writeln!(md, "\n## By {title}\n");
        for r in results.iter().filter(|r| !r.scored.is_empty()) {
            let groups = r.breakdown(vocab, by);
            let _ = writeln!(
                md,
                "{}:\n\n| {title} | exact match | correct | total |\n|---|---|---|---|",
                r.name
            );
            for (group, (c, t)) in &groups {
                let _ = writeln!(md, "| {group} | {} | {c} | {t} |", ratio(*c, *t));
                w.write_record([
                    r.name.as_str(),
                    title,
                    &group.to_string(),
                    &c.to_string(),
                    &t.to_string(),
                    &ratio(*c, *t),
                    "",
                ])?;
            }
            md.push('\n');
        }
    }
    let run = crate::artifacts::RunPaths::new(dir);
    write_atomic(&run.eval_suite_csv(), &w.into_inner()?)?;
    write_atomic(&run.eval_suite_md(), md.as_bytes())?;
    Ok(md)
}

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
    let curves = read_curves(&run.eval_suite_csv())?;
    if !curves.is_empty() {
        let plot = dir.join(SUITE_PLOT);
        crate::compare::plot::suite(&curves, &plot)?;
        md.push_str(&format!(
            "![exact match by answer length and depth]({SUITE_PLOT})\n"
        ));
    }
    write_atomic(&run.eval_suite_md(), md.as_bytes())?;
    Ok(md)
}

/// The figure `eval --suite` draws beside eval_suite.csv.
pub const SUITE_PLOT: &str = "eval_suite.png";

/// Exact match by answer length and by nesting depth: one set's (or one run's) lines.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteCurve {
    pub label: String,
    /// (group, correct, total), groups ascending.
    pub by_length: Vec<(usize, usize, usize)>,
    pub by_depth: Vec<(usize, usize, usize)>,
}

/// The curves of each set in an `eval_suite.csv`, in the file's order.
pub fn read_curves(path: &Path) -> anyhow::Result<Vec<SuiteCurve>> {
    use anyhow::Context;
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading '{}'", path.display()))?;
    let mut curves: Vec<SuiteCurve> = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("'{}' line {}", path.display(), i + 2))?;
        let field = |k: usize| row.get(k).unwrap_or("");
        let number = |k: usize| field(k).parse::<usize>().ok();
        let (Some(group), Some(correct), Some(total)) = (number(2), number(3), number(4)) else {
            continue; // the "all" rows, which have no group
        };
        let set = field(0);
        // The file lists every set by length, then every set by depth.
        let index = match curves.iter().position(|c| c.label == set) {
            Some(i) => i,
            None => {
                curves.push(SuiteCurve {
                    label: set.to_string(),
                    by_length: Vec::new(),
                    by_depth: Vec::new(),
                });
                curves.len() - 1
            }
        };
        let curve = &mut curves[index];
        match field(1) {
            "answer length" => curve.by_length.push((group, correct, total)),
            "nesting depth" => curve.by_depth.push((group, correct, total)),
            _ => {}
        }
    }
    Ok(curves)
}

/// One run's sets pooled into one curve (`compare` draws one line per run).
pub fn pooled(curves: &[SuiteCurve], label: &str) -> SuiteCurve {
    let pool = |part: fn(&SuiteCurve) -> &Vec<(usize, usize, usize)>| {
        let mut sums: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
        for &(g, c, t) in curves.iter().flat_map(part) {
            let e = sums.entry(g).or_default();
            (e.0, e.1) = (e.0 + c, e.1 + t);
        }
        sums.into_iter().map(|(g, (c, t))| (g, c, t)).collect()
    };
    SuiteCurve {
        label: label.to_string(),
        by_length: pool(|c| &c.by_length),
        by_depth: pool(|c| &c.by_depth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_read_per_set_and_pooled_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval_suite.csv");
        std::fs::write(
            &path,
            "set,breakdown,group,correct,total,exact,note\n\
             a,all,,3,4,0.75,\n\
             b,all,,1,2,0.5,\n\
             a,answer length,1,2,2,1.0,\n\
             a,answer length,2,1,2,0.5,\n\
             b,answer length,2,1,2,0.5,\n\
             a,nesting depth,1,3,4,0.75,\n\
             b,nesting depth,3,1,2,0.5,\n",
        )
        .unwrap();
        let curves = read_curves(&path).unwrap();
        assert_eq!(curves.len(), 2);
        assert_eq!(curves[0].label, "a");
        assert_eq!(curves[0].by_length, vec![(1, 2, 2), (2, 1, 2)]);
        assert_eq!(curves[1].by_depth, vec![(3, 1, 2)]);
        let run = pooled(&curves, "run");
        assert_eq!(run.by_length, vec![(1, 2, 2), (2, 2, 4)]);
        assert_eq!(run.by_depth, vec![(1, 3, 4), (3, 1, 2)]);
    }
}

//! `runner compare`: runs side by side. Collects run directories (given directly, as all
//! runs of a name, as all trials of a study, or as a bare `metrics.csv`), diffs their
//! resolved specs, and lines up their results, including at equal cost (the same elapsed
//! time, the same step). A missing or malformed file is reported and the rest still shows.

pub mod plot;

use crate::artifacts::RunPaths;
use crate::runs::{read_summary, Summary};
use crate::train::MetricsRow;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How `runner compare` prints its table (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for the terminal.
    Table,
    Csv,
    Json,
    Markdown,
}

/// One run as read from disk; any part may be missing.
#[derive(Debug, Clone)]
pub struct RunData {
    pub label: String,
    pub dir: PathBuf,
    /// Resolved spec flattened to `section.key` -> value text.
    pub spec: BTreeMap<String, String>,
    pub rows: Vec<MetricsRow>,
    pub summary: Option<Summary>,
    /// `eval_suite.csv` summary rows: set name -> exact match text.
    pub suite: BTreeMap<String, String>,
}

/// Expands every path into runs, and collects the problems met on the way.
pub fn collect(paths: &[PathBuf]) -> (Vec<RunData>, Vec<String>) {
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let found = expand(path);
        if found.is_empty() {
            problems.push(format!(
                "{}: no run found (expected a run, name or study directory, or a metrics.csv)",
                path.display()
            ));
        }
        for (label, dir, metrics) in found {
            runs.push(load_run(label, dir, &metrics, &mut problems));
        }
    }
    (runs, problems)
}

/// (label, run directory, metrics file) for each run under `path`.
fn expand(path: &Path) -> Vec<(String, PathBuf, PathBuf)> {
    if path.is_file() {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        return vec![(label_of(&dir, path), dir, path.to_path_buf())];
    }
    let is_run = |d: &Path| {
        let run = RunPaths::new(d);
        run.is_run() || run.metrics().is_file()
    };
    if is_run(path) {
        return vec![(
            label_of(path, path),
            path.to_path_buf(),
            RunPaths::new(path).metrics(),
        )];
    }
    let children = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|it| {
                it.flatten()
                    .map(|e| e.path())
                    .filter(|p| is_run(p))
                    .collect()
            })
            .unwrap_or_default();
        // Trials sort numerically, run ids by time.
        v.sort_by_key(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name.parse::<u64>().unwrap_or(u64::MAX), name)
        });
        v
    };
    let trials = path.join("trials");
    let dirs = if trials.is_dir() {
        children(&trials)
    } else {
        children(path)
    };
    dirs.into_iter()
        .map(|d| (label_of(&d, &d), d.clone(), RunPaths::new(&d).metrics()))
        .collect()
}

/// `name/run-id`, or `study#n` for a trial.
fn label_of(dir: &Path, fallback: &Path) -> String {
    let parts: Vec<String> = dir
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [.., study, trials, n] if trials == "trials" => format!("{study}#{n}"),
        [.., name, id] => format!("{name}/{id}"),
        [one] => one.clone(),
        _ => fallback.display().to_string(),
    }
}

fn load_run(label: String, dir: PathBuf, metrics: &Path, problems: &mut Vec<String>) -> RunData {
    let rows = crate::runs::read_metrics(metrics).unwrap_or_else(|(rows, problem)| {
        problems.push(problem);
        rows
    });
    let resolved = RunPaths::new(&dir).resolved();
    let spec = match std::fs::read_to_string(&resolved) {
        Ok(text) => match with_defaults(&text) {
            Ok(table) => flatten(&table),
            Err(e) => {
                problems.push(format!("{}: not valid TOML: {e}", resolved.display()));
                BTreeMap::new()
            }
        },
        Err(_) => BTreeMap::new(),
    };
    let summary = if RunPaths::new(&dir).summary().is_file() {
        read_summary(&dir)
            .map_err(|e| problems.push(format!("{e:#}")))
            .ok()
    } else {
        None
    };
    RunData {
        label,
        suite: read_suite(&dir),
        dir,
        spec,
        rows,
        summary,
    }
}

/// A resolved spec as a table, with the defaults of keys added since it was written (an
/// older run has no `model.reset`: it had none, which is the default), so that only real
/// differences show. A spec this version cannot read is shown as it is.
fn with_defaults(text: &str) -> Result<toml::Table, toml::de::Error> {
    let raw = text.parse::<toml::Table>()?;
    let filled = toml::from_str::<crate::spec::Spec>(text)
        .ok()
        .and_then(|spec| toml::Table::try_from(&spec).ok());
    Ok(filled.unwrap_or(raw))
}

fn flatten(table: &toml::Table) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (section, fields) in table {
        if section == "sweep" {
            continue;
        }
        if let toml::Value::Table(fields) = fields {
            for (key, value) in fields {
                out.insert(format!("{section}.{key}"), value.to_string());
            }
        }
    }
    out
}

/// One pooled evaluation-suite curve per run that has an `eval_suite.csv`, and the labels
/// of the runs that have none.
pub fn suite_curves(runs: &[RunData]) -> (Vec<crate::eval::suite::SuiteCurve>, Vec<String>) {
    let (mut curves, mut missing) = (Vec::new(), Vec::new());
    for r in runs {
        let path = RunPaths::new(&r.dir).eval_suite_csv();
        match crate::eval::suite::read_curves(&path) {
            Ok(sets) if !sets.is_empty() => {
                curves.push(crate::eval::suite::pooled(&sets, &r.label))
            }
            _ => missing.push(r.label.clone()),
        }
    }
    (curves, missing)
}

fn read_suite(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(mut reader) = csv::Reader::from_path(RunPaths::new(dir).eval_suite_csv()) else {
        return out;
    };
    for row in reader.records().flatten() {
        // set,breakdown,group,correct,total,exact,note
        if row.get(1) == Some("all") {
            let text = match row.get(6).filter(|n| !n.is_empty()) {
                Some(note) => note.to_string(),
                None => row.get(5).unwrap_or("").to_string(),
            };
            out.insert(row.get(0).unwrap_or("?").to_string(), text);
        }
    }
    out
}

/// Best val_exact among evaluations at or before `limit` of `by`.
pub fn exact_at(rows: &[MetricsRow], limit: f64, by: fn(&MetricsRow) -> f64) -> Option<f64> {
    rows.iter()
        .filter(|r| by(r) <= limit + 1e-9)
        .filter_map(|r| r.val_exact)
        .reduce(f64::max)
}

fn elapsed(r: &MetricsRow) -> f64 {
    r.elapsed_s
}

fn step(r: &MetricsRow) -> f64 {
    r.step as f64
}

/// The largest elapsed time and step that every run reached.
pub fn equal_cost(runs: &[RunData]) -> (Option<f64>, Option<f64>) {
    let common = |by: fn(&MetricsRow) -> f64| {
        runs.iter()
            .filter(|r| !r.rows.is_empty())
            .map(|r| r.rows.iter().map(by).fold(0.0, f64::max))
            .reduce(f64::min)
    };
    (common(elapsed), common(step))
}

/// One result row per run, with fixed columns: the machine-readable form.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub run: String,
    pub arch: String,
    pub status: String,
    pub best_val_exact: Option<f64>,
    pub final_val_exact: Option<f64>,
    pub test_exact: Option<f64>,
    pub best_val_loss: Option<f64>,
    pub steps: Option<u64>,
    pub samples: Option<u64>,
    pub wall_s: Option<f64>,
    pub samples_per_s: Option<f64>,
    pub params: Option<usize>,
    /// Parameters the optimiser updated (`train.freeze`, LoRA).
    pub trained_params: Option<usize>,
    pub equal_time_s: Option<f64>,
    pub val_exact_at_equal_time: Option<f64>,
    pub equal_step: Option<f64>,
    pub val_exact_at_equal_step: Option<f64>,
    /// The differing spec keys, `key=value` joined by `;`.
    pub spec_diff: String,
}

pub fn differing_keys(runs: &[RunData], all: bool) -> Vec<String> {
    let mut keys: Vec<String> = runs.iter().flat_map(|r| r.spec.keys().cloned()).collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| k != "experiment.name" && k != "experiment.out_dir");
    if !all {
        keys.retain(|k| {
            let first = runs[0].spec.get(k);
            runs.iter().any(|r| r.spec.get(k) != first)
        });
    }
    keys
}

pub fn rows(runs: &[RunData]) -> Vec<CompareRow> {
    let (t, s) = equal_cost(runs);
    let keys = differing_keys(runs, false);
    runs.iter()
        .map(|r| {
            let sm = r.summary.as_ref();
            CompareRow {
                run: r.label.clone(),
                arch: r
                    .spec
                    .get("model.arch")
                    .map(|a| a.trim_matches('"').to_string())
                    .or_else(|| sm.map(|s| s.arch.clone()))
                    .unwrap_or_default(),
                status: sm
                    .map(|s| s.status.as_str().to_string())
                    .unwrap_or_else(|| "unfinished".into()),
                best_val_exact: r.rows.iter().filter_map(|x| x.val_exact).reduce(f64::max),
                final_val_exact: r.rows.last().and_then(|x| x.val_exact),
                test_exact: sm.and_then(|s| s.test_exact),
                best_val_loss: crate::runs::best_val_loss(&r.rows),
                steps: r.rows.last().map(|x| x.step).or(sm.map(|s| s.steps)),
                samples: r.rows.last().map(|x| x.samples).or(sm.map(|s| s.samples)),
                wall_s: sm.map(|s| s.wall_s),
                samples_per_s: sm.map(|s| s.samples_per_s),
                params: sm.map(|s| s.params),
                trained_params: sm.and_then(|s| s.trained_params),
                equal_time_s: t,
                val_exact_at_equal_time: t.and_then(|t| exact_at(&r.rows, t, elapsed)),
                equal_step: s,
                val_exact_at_equal_step: s.and_then(|s| exact_at(&r.rows, s, step)),
                spec_diff: keys
                    .iter()
                    .map(|k| format!("{k}={}", r.spec.get(k).map(String::as_str).unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(";"),
            }
        })
        .collect()
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// The table for people: one column per run, differing keys first, then results.
pub fn render(runs: &[RunData], all_keys: bool, markdown: bool) -> String {
    let mut lines = spec_lines(runs, all_keys);
    lines.extend(result_lines(runs));
    lines.extend(suite_lines(runs));
    let header: Vec<String> = runs.iter().map(|r| r.label.clone()).collect();
    if markdown {
        markdown_table(&header, &lines)
    } else {
        aligned_table(&header, &lines)
    }
}

/// A row label and one value per run.
type Line = (String, Vec<String>);

/// The spec keys whose values differ (or all of them).
fn spec_lines(runs: &[RunData], all_keys: bool) -> Vec<Line> {
    differing_keys(runs, all_keys)
        .into_iter()
        .map(|key| {
            let values = runs
                .iter()
                .map(|r| r.spec.get(&key).cloned().unwrap_or_else(|| "-".into()))
                .collect();
            (key, values)
        })
        .collect()
}

/// The results, and the results at equal cost.
fn result_lines(runs: &[RunData]) -> Vec<Line> {
    let results = rows(runs);
    let (t, s) = equal_cost(runs);
    let field = |name: &str, f: &dyn Fn(&CompareRow) -> String| -> Line {
        (name.to_string(), results.iter().map(f).collect())
    };
    let count = |x: Option<u64>| x.map(|x| x.to_string()).unwrap_or("-".into());
    vec![
        field("status", &|r| r.status.clone()),
        field("best val exact", &|r| num(r.best_val_exact, 4)),
        field("final val exact", &|r| num(r.final_val_exact, 4)),
        field("test exact", &|r| num(r.test_exact, 4)),
        field("best val loss", &|r| num(r.best_val_loss, 4)),
        field("steps", &|r| count(r.steps)),
        field("samples", &|r| count(r.samples)),
        field("wall s", &|r| num(r.wall_s, 1)),
        field("samples/s", &|r| num(r.samples_per_s, 0)),
        field("params", &|r| count(r.params.map(|p| p as u64))),
        field("trained params", &|r| {
            count(r.trained_params.map(|p| p as u64))
        }),
        field(&format!("val exact @ {} s", num(t, 1)), &|r| {
            num(r.val_exact_at_equal_time, 4)
        }),
        field(&format!("val exact @ step {}", num(s, 0)), &|r| {
            num(r.val_exact_at_equal_step, 4)
        }),
    ]
}

/// One line per evaluation-suite set any run has.
fn suite_lines(runs: &[RunData]) -> Vec<Line> {
    let sets: BTreeSet<&String> = runs.iter().flat_map(|r| r.suite.keys()).collect();
    sets.into_iter()
        .map(|set| {
            let values = runs
                .iter()
                .map(|r| r.suite.get(set).cloned().unwrap_or_else(|| "-".into()))
                .collect();
            (format!("suite: {set}"), values)
        })
        .collect()
}

fn markdown_table(header: &[String], lines: &[Line]) -> String {
    let mut out = format!(
        "| | {} |\n|---|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for (name, values) in lines {
        let _ = writeln!(out, "| {name} | {} |", values.join(" | "));
    }
    out
}

fn aligned_table(header: &[String], lines: &[Line]) -> String {
    let first = lines
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|(_, v)| v[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(1)
        })
        .collect();
    let mut out = format!("{:first$}", "");
    for (h, w) in header.iter().zip(&widths) {
        let _ = write!(out, "  {h:>w$}");
    }
    out.push('\n');
    for (name, values) in lines {
        let _ = write!(out, "{name:first$}");
        for (v, w) in values.iter().zip(&widths) {
            let _ = write!(out, "  {v:>w$}");
        }
        out.push('\n');
    }
    out
}

pub fn to_csv(runs: &[RunData]) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows(runs) {
        w.serialize(row)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, elapsed_s: f64, val_exact: f64) -> MetricsRow {
        MetricsRow {
            step,
            epoch: 1,
            elapsed_s,
            samples: step * 64,
            train_loss: 1.0,
            val_loss: 1.0 - val_exact,
            val_token_acc: val_exact,
            val_exact: Some(val_exact),
            lr: 1e-3,
            stage: 0,
            reward: None,
            val_ppl: None,
        }
    }

    fn run(label: &str, rows: Vec<MetricsRow>, spec: &[(&str, &str)]) -> RunData {
        RunData {
            label: label.into(),
            dir: PathBuf::new(),
            spec: spec
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            rows,
            summary: None,
            suite: BTreeMap::new(),
        }
    }

    #[test]
    fn equal_time_and_equal_step_use_what_both_runs_reached() {
        // A fast small model and a slow big one.
        let fast = run(
            "fast",
            vec![row(100, 5.0, 0.5), row(200, 10.0, 0.8), row(400, 20.0, 0.9)],
            &[],
        );
        let slow = run("slow", vec![row(50, 6.0, 0.6), row(100, 12.0, 0.95)], &[]);
        let runs = vec![fast, slow];
        assert_eq!(equal_cost(&runs), (Some(12.0), Some(100.0)));
        let r = rows(&runs);
        // At 12 s: fast had 0.8 (its 10 s evaluation), slow 0.95.
        assert_eq!(
            (r[0].val_exact_at_equal_time, r[1].val_exact_at_equal_time),
            (Some(0.8), Some(0.95))
        );
        // At step 100: fast 0.5, slow 0.95.
        assert_eq!(
            (r[0].val_exact_at_equal_step, r[1].val_exact_at_equal_step),
            (Some(0.5), Some(0.95))
        );
    }

    #[test]
    fn only_differing_keys_unless_asked() {
        let a = run(
            "a",
            vec![],
            &[
                ("model.arch", "\"gru\""),
                ("train.lr", "0.003"),
                ("experiment.name", "\"a\""),
            ],
        );
        let b = run(
            "b",
            vec![],
            &[
                ("model.arch", "\"gpt\""),
                ("train.lr", "0.003"),
                ("experiment.name", "\"b\""),
            ],
        );
        let runs = vec![a, b];
        assert_eq!(differing_keys(&runs, false), vec!["model.arch"]);
        assert_eq!(differing_keys(&runs, true), vec!["model.arch", "train.lr"]);
        assert_eq!(rows(&runs)[1].spec_diff, "model.arch=\"gpt\"");
    }

    #[test]
    fn malformed_metrics_name_the_line_and_keep_earlier_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(
            &path,
            "step,epoch,elapsed_s,samples,train_loss,val_loss,val_token_acc,val_exact,lr\n\
             1,1,0.5,64,1.0,1.0,0.5,0.2,0.001\n\
             2,1,oops,128,1.0,1.0,0.5,0.2,0.001\n",
        )
        .unwrap();
        let (rows, message) = crate::runs::read_metrics(&path).unwrap_err();
        assert_eq!(rows.len(), 1);
        assert!(message.contains("metrics.csv:3"), "{message}");
        let (runs, problems) = collect(&[dir.path().join("nothing-here")]);
        assert!(runs.is_empty() && problems[0].contains("no run found"));
    }
}

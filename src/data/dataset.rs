//! Datasets on disk: the three splits built from a spec, saved in the origin project's forms
//! (strings, token ids, padded ids) and as JSONL; and JSONL eval files read back, checked
//! line by line.

use super::task::{closing, count_prefixes, draw_distinct, Example, Generator, TaskParams};
use super::vocab::Vocab;
use crate::artifacts::{write_atomic, write_json};
use crate::error::UserError;
use crate::limits::MAX_LINE_BYTES;
use crate::spec::Spec;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

/// Train, validation and test examples; no prefix appears in two of them. Train is an
/// i.i.d. sample of the task (a short prefix may repeat, as it does in the task); validation
/// and test hold distinct prefixes never seen in training, so they measure generalisation
/// and lean towards longer prefixes (every short prefix is usually taken by train).
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub test: Vec<Example>,
    /// One per curriculum stage (`data.stages`), in order.
    pub stages: Vec<StageSplits>,
}

/// The training and validation examples of a curriculum stage, both i.i.d. from the stage's
/// distribution: a short stage has few distinct prefixes, so its validation set may share
/// some with its training set (it only decides when to move on).
#[derive(Debug, Clone)]
pub struct StageSplits {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
}

pub fn vocab(spec: &Spec) -> Vocab {
    Vocab::new(&spec.pairs())
}

pub fn params(spec: &Spec) -> TaskParams {
    params_of(&spec.data)
}

fn params_of(d: &crate::spec::DataSpec) -> TaskParams {
    TaskParams {
        n_pairs: d.pairs.len(),
        min_len: d.min_len,
        max_len: d.max_len,
        max_depth: d.max_depth,
    }
}

/// Refuses, before any work, a dataset larger than the number of distinct prefixes.
pub fn check_capacity(spec: &Spec, origin: &str) -> Result<(), UserError> {
    if spec.is_text() {
        return Ok(());
    }
    let d = &spec.data;
    let wanted = d.train_samples + d.val_samples + d.test_samples;
    let available = count_prefixes(params(spec));
    // Rejection sampling slows down badly near the limit; ask for headroom.
    if (wanted as f64) > 0.8 * available {
        return Err(UserError::new(
            origin,
            Some("data.train_samples"),
            format!(
                "train + val + test = {wanted} samples, but these pairs, lengths and depth allow \
                 only {available} distinct prefixes (at most 80% can be drawn); ask for fewer \
                 samples or widen data.max_len / data.max_depth"
            ),
        ));
    }
    Ok(())
}

/// Draws the splits from the experiment seed: train first, i.i.d., so that it follows the
/// task distribution (drawing held-out sets first once took every length-2 prefix out of
/// training, and a masked LM then failed on short inputs); then validation and test from
/// the prefixes train does not hold.
pub fn build_splits(spec: &Spec, vocab: &Vocab) -> Result<Splits> {
    let mut generator =
        Generator::new(params(spec), spec.experiment.seed).with_task(spec.data.task);
    generator.balance(spec.data.balance_answers);
    let train: Vec<Example> = (0..spec.data.train_samples)
        .map(|_| generator.draw(vocab))
        .collect();
    generator.balance(0.0);
    let mut seen: HashSet<Vec<u32>> = train.iter().map(|e| e.prefix.clone()).collect();
    let mut draw = |n: usize, split: &str| {
        draw_distinct(&mut generator, vocab, n, &mut seen)
            .map_err(|e| anyhow::anyhow!("drawing the {split} split: {e}"))
    };
    let val = draw(spec.data.val_samples, "val")?;
    let test = draw(spec.data.test_samples, "test")?;
    let stages = (0..spec.data.stages.len())
        .map(|i| stage_splits(spec, vocab, i))
        .collect();
    Ok(Splits {
        train,
        val,
        test,
        stages,
    })
}

fn stage_splits(spec: &Spec, vocab: &Vocab, i: usize) -> StageSplits {
    let d = spec.data.stage(i);
    let seed = spec.experiment.seed ^ (i as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F);
    let mut generator = Generator::new(params_of(&d), seed).with_task(d.task);
    let mut draw = |n: usize, balance: f64| {
        generator.balance(balance);
        (0..n).map(|_| generator.draw(vocab)).collect()
    };
    StageSplits {
        train: draw(d.train_samples, d.balance_answers),
        val: draw(d.val_samples, 0.0),
    }
}

/// Seed for fresh evaluation examples: never the one that drew the run's splits.
pub fn fresh_seed(spec: &Spec) -> u64 {
    spec.experiment.seed.wrapping_add(0x9E37_79B9_7F4A_7C15)
}

/// `n` fresh examples from the spec's distribution (not deduplicated against anything).
pub fn fresh(spec: &Spec, vocab: &Vocab, n: usize, seed: u64) -> Vec<Example> {
    let mut generator = Generator::new(params(spec), seed).with_task(spec.data.task);
    (0..n).map(|_| generator.draw(vocab)).collect()
}

/// One line of a JSONL file: `{"input": "【{(", "output": ")}】"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlRow {
    pub input: String,
    pub output: String,
}

impl JsonlRow {
    pub fn from_example(e: &Example, vocab: &Vocab) -> Self {
        Self {
            input: vocab.decode(&e.prefix),
            output: vocab.decode(&e.answer),
        }
    }
}

/// Saves the splits under `dir` in every form the origin project used, plus JSONL.
pub fn save(dir: &Path, splits: &Splits, vocab: &Vocab) -> Result<()> {
    let pad_to = [&splits.train, &splits.val, &splits.test]
        .iter()
        .flat_map(|s| s.iter())
        .map(|e| e.record(vocab).len())
        .max()
        .unwrap_or(0);
    for (name, examples) in [
        ("train", &splits.train),
        ("val", &splits.val),
        ("test", &splits.test),
    ] {
        let strings: Vec<String> = examples
            .iter()
            .map(|e| {
                format!(
                    "input:{},output:{}",
                    vocab.decode(&e.prefix),
                    vocab.decode(&e.answer)
                )
            })
            .collect();
        write_json(&dir.join("original").join(format!("{name}.json")), &strings)?;
        let records: Vec<Vec<u32>> = examples.iter().map(|e| e.record(vocab)).collect();
        write_json(
            &dir.join("tokenized").join(format!("{name}.json")),
            &records,
        )?;
        let padded: Vec<Vec<u32>> = records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.resize(pad_to, super::vocab::PAD);
                r
            })
            .collect();
        write_json(&dir.join("padded").join(format!("{name}.json")), &padded)?;
        write_jsonl(&dir.join(format!("{name}.jsonl")), examples, vocab)?;
    }
    Ok(())
}

pub fn write_jsonl(path: &Path, examples: &[Example], vocab: &Vocab) -> Result<()> {
    let mut text = String::new();
    for e in examples {
        text.push_str(&serde_json::to_string(&JsonlRow::from_example(e, vocab))?);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// A JSONL line that cannot be scored, with its 1-based line number.
#[derive(Debug)]
pub struct BadLine {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// Examples read from a JSONL file, and how many invalid lines were skipped.
pub struct Loaded {
    pub examples: Vec<Example>,
    pub skipped: Vec<BadLine>,
}

/// Reads and checks an eval file. Every line must be a valid open prefix over the run's
/// brackets with its correct closing; otherwise the first bad line is an error, or, with
/// `skip_invalid`, bad lines are counted and skipped. A line longer than
/// [`MAX_LINE_BYTES`] is refused unread, so one huge line cannot exhaust memory.
pub fn load_jsonl(path: &Path, vocab: &Vocab, skip_invalid: bool) -> Result<Loaded> {
    use std::io::BufRead;
    let file = path.display().to_string();
    let reader = std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(|e| UserError::input(&file, format!("cannot read eval data: {e}")))?;
    let mut loaded = Loaded {
        examples: Vec::new(),
        skipped: Vec::new(),
    };
    let mut lines = std::io::Read::take(reader, u64::MAX);
    let mut buf = Vec::new();
    for number in 1.. {
        buf.clear();
        lines.set_limit(MAX_LINE_BYTES as u64 + 1);
        let read = lines.read_until(b'\n', &mut buf).map_err(|e| {
            UserError::input(format!("{file}:{number}"), format!("cannot read: {e}"))
        })?;
        if read == 0 {
            break;
        }
        if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
            return Err(UserError::input(
                format!("{file}:{number}"),
                format!(
                    "the line is longer than {MAX_LINE_BYTES} bytes; one line holds one example"
                ),
            )
            .into());
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line.trim_end(), vocab) {
            Ok(example) => loaded.examples.push(example),
            Err(message) => {
                let bad = BadLine {
                    file: file.clone(),
                    line: number,
                    message,
                };
                if !skip_invalid {
                    return Err(UserError::input(
                        format!("{}:{}", bad.file, bad.line),
                        format!("{} (use --skip-invalid to skip such lines)", bad.message),
                    )
                    .into());
                }
                loaded.skipped.push(bad);
            }
        }
    }
    if loaded.examples.is_empty() {
        return Err(UserError::input(&file, "holds no valid examples").into());
    }
    Ok(loaded)
}

fn parse_line(line: &str, vocab: &Vocab) -> Result<Example, String> {
    let row: JsonlRow = serde_json::from_str(line)
        .map_err(|e| format!("not a JSON object {{\"input\": ..., \"output\": ...}}: {e}"))?;
    let prefix = vocab
        .encode(&row.input)
        .map_err(|e| format!("input: {e}"))?;
    let answer = closing(vocab, &prefix).map_err(|e| format!("input '{}': {e}", row.input))?;
    let expected = vocab
        .encode(&row.output)
        .map_err(|e| format!("output: {e}"))?;
    if expected != answer {
        return Err(format!(
            "output '{}' is not the closing of '{}' (that is '{}')",
            row.output,
            row.input,
            vocab.decode(&answer)
        ));
    }
    Ok(Example { prefix, answer })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_spec() -> Spec {
        let mut spec = Spec::default();
        spec.data.train_samples = 300;
        spec.data.val_samples = 50;
        spec.data.test_samples = 50;
        spec
    }

    #[test]
    fn splits_are_disjoint_and_deterministic() {
        let spec = small_spec();
        let v = vocab(&spec);
        let a = build_splits(&spec, &v).unwrap();
        let b = build_splits(&spec, &v).unwrap();
        assert_eq!(
            (a.train.clone(), a.val.clone(), a.test.clone()),
            (b.train, b.val, b.test)
        );
        let train: HashSet<_> = a.train.iter().map(|e| e.prefix.clone()).collect();
        let mut held_out = HashSet::new();
        for e in a.val.iter().chain(&a.test) {
            assert!(
                !train.contains(&e.prefix),
                "held-out prefix seen in training"
            );
            assert!(
                held_out.insert(e.prefix.clone()),
                "prefix repeated in val/test"
            );
        }
        assert_eq!(held_out.len(), 100);
        assert_eq!(a.train.len(), 300);
    }

    #[test]
    fn balancing_changes_the_training_split_only() {
        let mut spec = small_spec();
        spec.data.train_samples = 3_000;
        spec.data.val_samples = 3_000;
        spec.data.balance_answers = 1.0;
        let v = vocab(&spec);
        let splits = build_splits(&spec, &v).unwrap();
        let deepest = |examples: &[Example]| {
            let n = examples.iter().filter(|e| e.answer.len() == 6).count();
            n as f64 / examples.len() as f64
        };
        // The task leaves six brackets open in 4.4% of its prefixes; balanced, a sixth.
        assert!(deepest(&splits.train) > 0.14, "{}", deepest(&splits.train));
        assert!(deepest(&splits.val) < 0.06, "{}", deepest(&splits.val));
    }

    #[test]
    fn capacity_check_names_the_key() {
        let mut spec = small_spec();
        spec.data.max_len = 3;
        let err = check_capacity(&spec, "s.toml").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("data.train_samples"));
    }

    #[test]
    fn jsonl_round_trip_and_line_errors() {
        let spec = small_spec();
        let v = vocab(&spec);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let examples = fresh(&spec, &v, 20, 1);
        write_jsonl(&path, &examples, &v).unwrap();
        assert_eq!(load_jsonl(&path, &v, false).unwrap().examples, examples);

        let bad =
            "{\"input\": \"((\", \"output\": \"))\"}\n{\"input\": \"([\", \"output\": \"])\"}\n\
                   {\"input\": \"(\", \"output\": \"}\"}\n{\"input\": \"()\", \"output\": \"\"}\n";
        std::fs::write(&path, bad).unwrap();
        let err = format!("{:#}", load_jsonl(&path, &v, false).err().unwrap());
        assert!(err.contains("x.jsonl:2") && err.contains("'['"), "{err}");
        let loaded = load_jsonl(&path, &v, true).unwrap();
        assert_eq!(loaded.examples.len(), 1);
        let lines: Vec<usize> = loaded.skipped.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
    }
}

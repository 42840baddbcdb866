//! Text runs (`data.source = "text"`): corpus files, their tokenizer, and the windows of
//! tokens the text GPT trains and is validated on. The windows are `Example`s whose prefix
//! holds the tokens (and no answer), so that the training loop, checkpoints and resume are
//! the ones bracket runs use. Nothing here touches burn.

pub mod corpus;
pub mod export;
pub mod generate;
pub mod tokenizer;

use crate::data::Example;
use crate::spec::Spec;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;
use tokenizer::TextTokenizer;
use tracing::{info, warn};

/// The run directory's tokenizer: what `runner generate` and `runner export` read.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A text run's data.
#[derive(Debug)]
pub struct TextData {
    pub tokenizer: TextTokenizer,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub stats: TextStats,
}

/// How the corpus came out: saved as `dataset/text.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TextStats {
    pub files: Vec<String>,
    pub bytes: usize,
    pub tokenizer: String,
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    pub train_windows: usize,
    pub val_windows: usize,
    pub context_length: usize,
    /// Corpus lines that do not come back unchanged from encode then decode.
    pub round_trip_failures: usize,
}

/// What can be checked before a run directory exists: every corpus file reads as
/// non-empty UTF-8, and a tokenizer file to reuse loads and fits `data.vocab_size`.
pub fn check(spec: &Spec) -> Result<(), crate::error::UserError> {
    let d = &spec.data;
    corpus::read(&d.corpus)?;
    if let crate::spec::TokenizerChoice::File(path) = &d.tokenizer {
        TextTokenizer::load(Path::new(path), "data.tokenizer")?
            .check_size(d.vocab_size, "data.vocab_size")?;
    }
    Ok(())
}

/// Reads the corpus, gets the tokenizer (`saved` when given: a resumed run reads its text
/// as it did; else trained or loaded as `data.tokenizer` says) and cuts both parts into
/// windows.
pub fn prepare(spec: &Spec, saved: Option<&Path>) -> Result<TextData> {
    let d = &spec.data;
    let files = corpus::read(&d.corpus)?;
    let tokenizer = match saved {
        Some(path) => TextTokenizer::load(path, TOKENIZER_FILE)?,
        None => TextTokenizer::train(&d.tokenizer, d.vocab_size, &files)?,
    };
    tokenizer.check_size(d.vocab_size, "data.vocab_size")?;
    let (mut train_ids, mut val_ids) = (Vec::new(), Vec::new());
    let mut failures = 0;
    for file in &files {
        let (train, val) = file.split(d.val_fraction);
        failures += tokenizer.round_trip_failures(&file.text).len();
        // Files are separate documents: a window that spans two says where one ends.
        for (ids, part) in [(&mut train_ids, train), (&mut val_ids, val)] {
            ids.extend(tokenizer.encode(part));
            ids.push(tokenizer.eot());
        }
    }
    if failures > 0 {
        warn!(
            lines = failures,
            "corpus lines that the tokenizer does not give back unchanged"
        );
    }
    let n = d.context_length;
    // Training windows overlap by half, so every token is also seen with the context
    // before it; validation windows do not, so each token is scored once.
    let train = windows(&train_ids, n, (n / 2).max(1));
    let val = windows(&val_ids, n, n);
    if train.is_empty() || val.is_empty() {
        return Err(crate::error::UserError::new(
            "",
            Some("data.corpus"),
            format!(
                "the corpus gives {} training and {} validation tokens: too few for one window \
                 each; add text or lower data.val_fraction",
                train_ids.len(),
                val_ids.len()
            ),
        )
        .into());
    }
    let stats = TextStats {
        files: d.corpus.clone(),
        bytes: files.iter().map(|f| f.text.len()).sum(),
        tokenizer: String::from(d.tokenizer.clone()),
        vocab_size: tokenizer.size(),
        train_tokens: train_ids.len(),
        val_tokens: val_ids.len(),
        train_windows: train.len(),
        val_windows: val.len(),
        context_length: n,
        round_trip_failures: failures,
    };
    Ok(TextData {
        tokenizer,
        train,
        val,
        stats,
    })
}

/// Writes the tokenizer and the corpus statistics into a new run's directory.
pub fn save(data: &TextData, run_root: &Path, dataset_dir: &Path) -> Result<()> {
    let path = run_root.join(TOKENIZER_FILE);
    crate::artifacts::write_atomic(&path, data.tokenizer.to_json()?.as_bytes())?;
    std::fs::create_dir_all(dataset_dir)
        .with_context(|| format!("creating '{}'", dataset_dir.display()))?;
    crate::artifacts::write_json(&dataset_dir.join("text.json"), &data.stats)?;
    let s = &data.stats;
    info!(
        bytes = s.bytes,
        tokens = s.vocab_size,
        train_tokens = s.train_tokens,
        val_tokens = s.val_tokens,
        train_windows = s.train_windows,
        val_windows = s.val_windows,
        "text dataset"
    );
    Ok(())
}

/// Refuses a text run in a command that scores bracket closings (`what`), pointing at
/// what does work for it.
pub fn refuse(run_dir: &Path, spec: &Spec, what: &str) -> Result<(), crate::error::UserError> {
    if !spec.is_text() {
        return Ok(());
    }
    Err(crate::error::UserError::input(
        run_dir.display().to_string(),
        format!(
            "is a text run (data.source = \"text\"): {what} scores bracket closings; use \
             runner generate to sample from it, metrics.csv for its validation loss and \
             perplexity"
        ),
    ))
}

/// The run's tokenizer, for commands that read a finished run.
pub fn run_tokenizer(run_root: &Path) -> Result<TextTokenizer> {
    let path = run_root.join(TOKENIZER_FILE);
    Ok(TextTokenizer::load(&path, "RUN")?)
}

/// Windows of `n + 1` tokens (the model reads `n`, each predicting the next) starting every
/// `stride` tokens; the last one may be shorter, none shorter than two.
pub fn windows(ids: &[u32], n: usize, stride: usize) -> Vec<Example> {
    let mut out = Vec::new();
    let mut start = 0;
    while start + 1 < ids.len() {
        let end = (start + n + 1).min(ids.len());
        out.push(Example {
            prefix: ids[start..end].to_vec(),
            answer: Vec::new(),
        });
        if end == ids.len() {
            break;
        }
        start += stride;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_token_and_predict_the_next() {
        let ids: Vec<u32> = (1..=10).collect();
        let w = windows(&ids, 4, 4);
        let starts: Vec<u32> = w.iter().map(|e| e.prefix[0]).collect();
        assert_eq!(starts, vec![1, 5, 9]);
        assert_eq!(w[0].prefix, vec![1, 2, 3, 4, 5]);
        // The last window holds the remaining tokens; every token but the first is a target.
        assert_eq!(w[2].prefix, vec![9, 10]);
        let targets: usize = w.iter().map(|e| e.prefix.len() - 1).sum();
        assert_eq!(targets, ids.len() - 1);
    }

    #[test]
    fn overlapping_windows_and_tiny_inputs() {
        let ids: Vec<u32> = (1..=9).collect();
        let w = windows(&ids, 4, 2);
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(w[1].prefix, vec![3, 4, 5, 6, 7]);
        assert!(windows(&[7], 4, 4).is_empty());
        assert_eq!(windows(&[7, 8], 4, 4)[0].prefix, vec![7, 8]);
    }
}

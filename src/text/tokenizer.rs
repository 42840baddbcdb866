//! Tokenizers for text runs, all Hugging Face `tokenizers` objects saved as the same
//! `tokenizer.json` that `transformers` loads: byte-level BPE (GPT-2's), Unigram with
//! SentencePiece's whitespace marker, or one token per character. Id 0 is always `<pad>`
//! (the loss ignores it, as it ignores bracket padding) and id 1 `<|endoftext|>`, which
//! separates corpus files.

use super::corpus::CorpusFile;
use crate::error::UserError;
use crate::spec::TokenizerChoice;
use std::collections::BTreeSet;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::unigram::{Unigram, UnigramTrainerBuilder};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::{AddedToken, Tokenizer};

pub const PAD: &str = "<pad>";
pub const EOT: &str = "<|endoftext|>";
/// Unigram's stand-in for a character it never saw.
const UNK: &str = "<unk>";

/// A text run's tokenizer.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({} tokens)", self.size())
    }
}

impl TextTokenizer {
    /// Trains `choice` on the corpus (every line, newlines included), with at most
    /// `vocab_size` tokens. `File` loads instead.
    pub fn train(
        choice: &TokenizerChoice,
        vocab_size: usize,
        corpus: &[CorpusFile],
    ) -> Result<Self, UserError> {
        let lines = || corpus.iter().flat_map(|f| f.text.split_inclusive('\n'));
        let trained = match choice {
            TokenizerChoice::Bpe => bpe(vocab_size, lines()),
            TokenizerChoice::Unigram => unigram(vocab_size, lines()),
            TokenizerChoice::Char => Ok(chars(lines())),
            TokenizerChoice::File(path) => return Self::load(Path::new(path), "data.tokenizer"),
        };
        let inner = trained.map_err(|e| {
            UserError::new(
                "",
                Some("data.tokenizer"),
                format!("training the tokenizer failed: {e}"),
            )
        })?;
        let tokenizer = Self { inner };
        tokenizer.check_size(vocab_size, "data.vocab_size")?;
        Ok(tokenizer)
    }

    /// A `tokenizer.json` written by a run (or any with `<pad>` at id 0 and an
    /// `<|endoftext|>` token). `key` names where the path came from.
    pub fn load(path: &Path, key: &str) -> Result<Self, UserError> {
        let fail = |m: String| UserError::new("", Some(key), format!("'{}' {m}", path.display()));
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let inner: Tokenizer = text
            .parse()
            .map_err(|e| fail(format!("is not a tokenizer.json: {e}")))?;
        if inner.token_to_id(PAD) != Some(0) || inner.token_to_id(EOT).is_none() {
            return Err(fail(format!(
                "has no {PAD} at id 0 and {EOT} token: runner reserves id 0 for padding; use \
                 a tokenizer.json that a text run wrote"
            )));
        }
        Ok(Self { inner })
    }

    /// The tokenizer's JSON, as `tokenizer.json` holds it.
    pub fn to_json(&self) -> anyhow::Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))
    }

    /// Tokens, special ones included.
    pub fn size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Refuses a tokenizer larger than the model's embedding (`key` = the limit's key).
    pub fn check_size(&self, limit: usize, key: &str) -> Result<(), UserError> {
        if self.size() > limit {
            return Err(UserError::new(
                "",
                Some(key),
                format!(
                    "the tokenizer has {} tokens but data.vocab_size is {limit} (a character \
                     tokenizer needs one per distinct character, plus {PAD} and {EOT}); raise \
                     data.vocab_size to at least {}",
                    self.size(),
                    self.size()
                ),
            ));
        }
        Ok(())
    }

    pub fn eot(&self) -> u32 {
        self.inner.token_to_id(EOT).expect("checked when built")
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// Token ids of `text`, refused when decoding them would not give `text` back (a
    /// character the tokenizer has no token for): the error names it and its position.
    pub fn encode_exact(&self, text: &str) -> Result<Vec<u32>, String> {
        let ids = self.encode(text);
        if self.decode(&ids) == text {
            return Ok(ids);
        }
        let (position, ch) = text
            .chars()
            .enumerate()
            .find(|(_, c)| {
                let one = c.to_string();
                self.decode(&self.encode(&one)) != one
            })
            .unwrap_or((0, text.chars().next().unwrap_or(' ')));
        Err(format!(
            "'{ch}' (character {}) is not in the tokenizer's vocabulary; use characters of the \
             corpus it was trained on",
            position + 1
        ))
    }

    /// The text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    /// Lines of `text` that do not come back unchanged from encode and decode.
    pub fn round_trip_failures<'a>(&self, text: &'a str) -> Vec<&'a str> {
        text.split_inclusive('\n')
            .filter(|line| self.decode(&self.encode(line)) != *line)
            .collect()
    }
}

fn specials(extra: &[&str]) -> Vec<AddedToken> {
    [PAD, EOT]
        .iter()
        .chain(extra)
        .map(|t| AddedToken::from(*t, true))
        .collect()
}

/// GPT-2's tokenizer: bytes as the alphabet, so any text (any script) encodes and decodes
/// exactly; no space added in front.
fn bpe<'a>(
    vocab_size: usize,
    lines: impl Iterator<Item = &'a str> + Send,
) -> tokenizers::Result<Tokenizer> {
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(specials(&[]))
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::new(false, true, true)));
    tokenizer.train(&mut trainer, lines)?;
    Ok(tokenizer)
}

/// SentencePiece's Unigram: spaces become `▁` and belong to the next piece; none is added in
/// front, so leading spaces survive a round trip.
fn unigram<'a>(
    vocab_size: usize,
    lines: impl Iterator<Item = &'a str> + Send,
) -> tokenizers::Result<Tokenizer> {
    let mut trainer: TrainerWrapper = UnigramTrainerBuilder::default()
        .show_progress(false)
        .vocab_size(vocab_size as u32)
        .special_tokens(specials(&[UNK]))
        .unk_token(Some(UNK.into()))
        .build()?
        .into();
    let metaspace = Metaspace::new('▁', PrependScheme::Never, true);
    let mut tokenizer = Tokenizer::new(Unigram::default());
    tokenizer.with_pre_tokenizer(Some(metaspace.clone()));
    tokenizer.with_decoder(Some(metaspace));
    tokenizer.train(&mut trainer, lines)?;
    Ok(tokenizer)
}

/// One token per distinct character of the corpus (in code point order, after the
/// special tokens): a BPE model with no merges, whose pieces are joined as they are.
fn chars<'a>(lines: impl Iterator<Item = &'a str>) -> Tokenizer {
    let alphabet: BTreeSet<char> = lines.flat_map(str::chars).collect();
    let mut vocab = serde_json::Map::new();
    for (id, token) in [PAD.to_string(), EOT.to_string()]
        .into_iter()
        .chain(alphabet.iter().map(|c| c.to_string()))
        .enumerate()
    {
        vocab.insert(token, id.into());
    }
    let added: Vec<serde_json::Value> = [PAD, EOT]
        .iter()
        .enumerate()
        .map(|(id, t)| {
            serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []},
    });
    json.to_string()
        .parse()
        .expect("a character tokenizer's JSON is well-formed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<CorpusFile> {
        let text = "And God said, Let there be light: and there was light.\n\
                    \tIndented,  two spaces, and a trailing one \n\
                    吾輩は猫である。名前はまだ無い。\n\
                    どこで生れたかとんと見当がつかぬ。\n"
            .repeat(8);
        vec![CorpusFile {
            path: "c.txt".into(),
            text,
        }]
    }

    #[test]
    fn every_tokenizer_round_trips_every_corpus_line_including_japanese() {
        let files = corpus();
        for choice in [
            TokenizerChoice::Bpe,
            TokenizerChoice::Unigram,
            TokenizerChoice::Char,
        ] {
            let t = TextTokenizer::train(&choice, 300, &files).unwrap();
            assert_eq!(
                t.round_trip_failures(&files[0].text),
                Vec::<&str>::new(),
                "{choice:?}"
            );
            assert_eq!(t.inner.token_to_id(PAD), Some(0), "{choice:?}");
            let ids = t.encode("吾輩は猫");
            assert!(!ids.is_empty() && !ids.contains(&0), "{choice:?}: {ids:?}");
            assert_eq!(t.decode(&ids), "吾輩は猫");
        }
    }

    #[test]
    fn a_saved_tokenizer_loads_and_encodes_the_same() {
        let files = corpus();
        let t = TextTokenizer::train(&TokenizerChoice::Bpe, 300, &files).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, t.to_json().unwrap()).unwrap();
        let back = TextTokenizer::load(&path, "data.tokenizer").unwrap();
        assert_eq!(back.encode(&files[0].text), t.encode(&files[0].text));
        std::fs::write(&path, "{}").unwrap();
        let e = TextTokenizer::load(&path, "data.tokenizer")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.tokenizer") && e.contains("not a tokenizer.json"),
            "{e}"
        );
    }

    #[test]
    fn a_character_outside_the_vocabulary_is_named() {
        let t = TextTokenizer::train(&TokenizerChoice::Char, 300, &corpus()).unwrap();
        let e = t.encode_exact("And Zeus").unwrap_err();
        assert!(e.contains("'Z'") && e.contains("character 5"), "{e}");
        let small = TextTokenizer::train(&TokenizerChoice::Char, 10, &corpus()).unwrap_err();
        assert!(small.to_string().contains("data.vocab_size"), "{small}");
    }
}

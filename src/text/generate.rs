//! `runner generate`: continue a prompt with a text run's model, token by token, printing
//! each piece of text as soon as it is whole. Greedy by default; temperature, top-k and
//! top-p sampling from a seeded generator, so that the same seed gives the same text.

use super::tokenizer::TextTokenizer;
use crate::error::UserError;
use crate::model::{Gpt2, Model};
use crate::train::checkpoint::{self, Slot};
use anyhow::Result;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;

/// How each next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 = greedy (the most likely token).
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the most likely tokens whose probabilities add up to p (1 = all).
    pub top_p: f64,
    pub seed: u64,
}

impl Sampling {
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
    };

    /// Refuses values no sampler can use, naming the flag.
    pub fn check(&self) -> Result<(), UserError> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(UserError::input(
                "--temperature",
                format!("{} is not allowed: 0 (greedy) or more", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(UserError::input(
                "--top-p",
                format!("{} is outside (0, 1]", self.top_p),
            ));
        }
        Ok(())
    }
}

/// What a generation made.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub ids: Vec<u32>,
    pub text: String,
}

/// A text run's model and tokenizer, ready to generate.
pub struct TextModel {
    pub model: Gpt2,
    pub tokenizer: TextTokenizer,
    device: Device,
}

impl TextModel {
    /// The run's `slot` checkpoint and `tokenizer.json`; a bracket run is refused.
    pub fn load(run_dir: &Path, slot: Slot) -> Result<Self> {
        let (loaded, device) = checkpoint::load_run(run_dir, slot)?;
        let Model::Gpt2(model) = loaded.model else {
            return Err(UserError::input(
                run_dir.display().to_string(),
                "is a bracket run: generate continues text with a text run's model \
                 (data.source = \"text\"); use runner predict for brackets",
            )
            .into());
        };
        let tokenizer = super::run_tokenizer(run_dir)?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// The prompt's ids; a character the tokenizer cannot write is refused, naming it.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, UserError> {
        if prompt.is_empty() {
            // An empty prompt starts from the separator the model saw between documents.
            return Ok(vec![self.tokenizer.eot()]);
        }
        self.tokenizer
            .encode_exact(prompt)
            .map_err(|m| UserError::input("--prompt", m))
    }

    /// Continues `prompt` with up to `max_new` tokens (stopping at `<|endoftext|>`), calling
    /// `out` with each new piece of text as it becomes whole.
    pub fn generate(
        &self,
        prompt: &[u32],
        max_new: usize,
        sampling: Sampling,
        out: &mut dyn FnMut(&str),
    ) -> Generated {
        let mut rng = ChaCha8Rng::seed_from_u64(sampling.seed);
        let mut ids = prompt.to_vec();
        let mut new = Vec::new();
        let mut shown = String::new();
        let usable = self.tokenizer.size().min(self.model.n_tokens());
        for _ in 0..max_new {
            let mut logits = self.next_logits(&ids);
            logits.truncate(usable);
            // Padding is never written.
            logits[0] = f32::NEG_INFINITY;
            let next = choose(&logits, sampling, &mut rng);
            if next == self.tokenizer.eot() {
                break;
            }
            ids.push(next);
            new.push(next);
            let text = self.tokenizer.decode(&new);
            // A byte-level token may end inside a character: wait for the rest.
            if !text.ends_with('\u{FFFD}') {
                show(&text, &mut shown, out);
            }
        }
        let text = self.tokenizer.decode(&new);
        show(&text, &mut shown, out);
        Generated { ids: new, text }
    }

    /// Logits of the token after `ids`, given the last window the model can read.
    pub fn next_logits(&self, ids: &[u32]) -> Vec<f32> {
        let window = &ids[ids.len().saturating_sub(self.model.n_positions())..];
        let data: Vec<i64> = window.iter().map(|&i| i as i64).collect();
        let tokens =
            Tensor::<1, Int>::from_data(data.as_slice(), &self.device).reshape([1, window.len()]);
        let logits = self.model.forward(tokens); // [1, len, n_tokens]
        let [_, len, n] = logits.dims();
        let last = logits.slice([0..1, len - 1..len, 0..n]).reshape([n]);
        last.to_data().iter::<f32>().collect()
    }
}

/// Passes on what `text` adds to what was shown (nothing if a decoder rewrote the part
/// already shown).
fn show(text: &str, shown: &mut String, out: &mut dyn FnMut(&str)) {
    if let Some(piece) = text.strip_prefix(shown.as_str()).filter(|p| !p.is_empty()) {
        out(piece);
        shown.push_str(piece);
    }
}

/// The next token: the argmax when greedy, else a draw from the tempered distribution
/// over the top-k tokens, cut to the top-p mass.
fn choose(logits: &[f32], sampling: Sampling, rng: &mut impl Rng) -> u32 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Ties go to the lower id, as argmax does.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if sampling.temperature == 0.0 {
        return order[0] as u32;
    }
    if sampling.top_k > 0 {
        order.truncate(sampling.top_k);
    }
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - top) / sampling.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut kept = 0;
    let mut mass = 0.0;
    for w in &weights {
        kept += 1;
        mass += w / total;
        if mass >= sampling.top_p {
            break;
        }
    }
    let kept_total: f64 = weights[..kept].iter().sum();
    let mut draw = rng.gen::<f64>() * kept_total;
    for (i, w) in weights[..kept].iter().enumerate() {
        if draw < *w {
            return order[i] as u32;
        }
        draw -= w;
    }
    order[kept - 1] as u32
}

/// `runner generate`: prints the prompt, then the continuation as it is made; or, with
/// `json`, one object once it is done.
pub fn run(
    run_dir: &Path,
    prompt: &str,
    max_new: usize,
    sampling: Sampling,
    slot: Slot,
    json: bool,
) -> Result<()> {
    sampling.check()?;
    let model = TextModel::load(run_dir, slot)?;
    let ids = model.encode_prompt(prompt)?;
    if json {
        let first_logits = model.next_logits(&ids);
        let made = model.generate(&ids, max_new, sampling, &mut |_| {});
        let value = serde_json::json!({
            "prompt": prompt,
            "prompt_ids": ids,
            "ids": made.ids,
            "text": made.text,
            "first_logits": first_logits,
        });
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{prompt}")?;
    stdout.flush()?;
    model.generate(&ids, max_new, sampling, &mut |piece| {
        // A closed pipe ends the output, not the program with a panic.
        let _ = write!(stdout, "{piece}").and_then(|_| stdout.flush());
    });
    writeln!(stdout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(temperature: f64, top_k: usize, top_p: f64) -> Sampling {
        Sampling {
            temperature,
            top_k,
            top_p,
            seed: 0,
        }
    }

    #[test]
    fn greedy_takes_the_argmax_and_top_k_1_is_greedy() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(choose(&logits, Sampling::GREEDY, &mut rng), 1);
        for _ in 0..50 {
            assert_eq!(choose(&logits, sampling(1.0, 1, 1.0), &mut rng), 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_likely_tokens_and_sampling_follows_the_distribution() {
        // Probabilities about 0.64, 0.24, 0.09, 0.03.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[choose(&logits, sampling(1.0, 0, 0.8), &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0, "{counts:?}");
        let share = counts[0] as f64 / 4000.0;
        // Renormalised over the two kept: 0.64 / 0.88 = 0.73.
        assert!((share - 0.73).abs() < 0.03, "{share}");
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[choose(&logits, sampling(1.0, 0, 1.0), &mut rng) as usize] += 1;
        }
        assert!(counts[3] > 50, "every token can be drawn: {counts:?}");
    }

    #[test]
    fn bad_sampling_values_name_the_flag() {
        let e = sampling(-1.0, 0, 1.0).check().unwrap_err().to_string();
        assert!(e.contains("--temperature"), "{e}");
        let e = sampling(1.0, 0, 0.0).check().unwrap_err().to_string();
        assert!(e.contains("--top-p"), "{e}");
    }
}

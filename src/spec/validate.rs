//! Checks that burn would otherwise turn into a panic deep inside, or a run that silently
//! means nothing. Each failure names the key and what is allowed.

use super::{
    Activation, Arch, DecayOver, EvalEvery, LossOn, Objective, PosEncoding, PrunerKind, RuleKind,
    Spec, StudyStorage, Task, TokenizerChoice, TrainObjective,
};
use crate::error::UserError;
use std::collections::HashSet;

/// Validates a resolved spec. The returned error's `origin` is empty: the caller knows the file.
pub fn validate(spec: &Spec) -> Result<(), UserError> {
    check_name(&spec.experiment.name).or_else(|m| fail("experiment.name", m))?;
    positive("experiment.threads", spec.experiment.threads)?;
    if spec.is_text() {
        check_text(spec)?;
    } else {
        check_data(spec)?;
    }
    check_model(spec)?;
    check_train(spec)?;
    check_eval_and_sweep(spec)
}

fn fail(key: &str, message: String) -> Result<(), UserError> {
    Err(UserError::new("", Some(key), message))
}

fn check_data(spec: &Spec) -> Result<(), UserError> {
    let d = &spec.data;
    check_pairs(&d.pairs).or_else(|m| fail("data.pairs", m))?;
    check_shape("data", d.min_len, d.max_len, d.max_depth)?;
    positive("data.train_samples", d.train_samples)?;
    positive("data.val_samples", d.val_samples)?;
    positive("data.test_samples", d.test_samples)?;
    if !(0.0..=1.0).contains(&d.balance_answers) {
        return fail(
            "data.balance_answers",
            format!(
                "{} is outside 0-1 (0: the task's own answer lengths; 1: every answer length \
                 equally often)",
                d.balance_answers
            ),
        );
    }
    check_stages(spec)
}

/// A text run: corpus files, a tokenizer, windows the model can read, and none of the
/// settings that only mean something for bracket answers.
fn check_text(spec: &Spec) -> Result<(), UserError> {
    let d = &spec.data;
    if d.corpus.is_empty() || d.corpus.iter().any(|c| c.trim().is_empty()) {
        return fail(
            "data.corpus",
            "data.source = \"text\" needs corpus files: a path or a list of paths to UTF-8 text"
                .into(),
        );
    }
    if spec.model.arch != Arch::Gpt {
        return fail(
            "model.arch",
            format!(
                "text runs train a GPT-2-style decoder: use model.arch = \"gpt\", not \"{}\"",
                spec.model.arch.name()
            ),
        );
    }
    if d.context_length < 2 {
        return fail(
            "data.context_length",
            format!("{} tokens: a window needs at least 2", d.context_length),
        );
    }
    if let TokenizerChoice::File(path) = &d.tokenizer {
        if path.trim().is_empty() || !path.ends_with(".json") {
            return fail(
                "data.tokenizer",
                format!(
                    "'{path}' is none of \"bpe\", \"unigram\", \"char\", nor the path of a \
                     tokenizer.json to reuse"
                ),
            );
        }
    }
    let least = match d.tokenizer {
        TokenizerChoice::Bpe => 256 + 2,
        _ => 3,
    };
    if d.vocab_size < least {
        let why = if d.tokenizer == TokenizerChoice::Bpe {
            "byte-level BPE starts from the 256 bytes, plus <pad> and <|endoftext|>"
        } else {
            "<pad>, <|endoftext|> and at least one token"
        };
        return fail(
            "data.vocab_size",
            format!("{} is too small: at least {least} ({why})", d.vocab_size),
        );
    }
    if !(d.val_fraction > 0.0 && d.val_fraction < 1.0) {
        return fail(
            "data.val_fraction",
            format!("{} is outside (0, 1)", d.val_fraction),
        );
    }
    let refused = [
        ("data.task", d.task != Task::Close),
        ("data.stages", !d.stages.is_empty()),
        ("data.balance_answers", d.balance_answers != 0.0),
        ("train.loss_on", spec.train.loss_on != LossOn::Answer),
        ("train.augment", !spec.train.augment.is_empty()),
        ("train.rules", !spec.train.rules.is_empty()),
        (
            "train.objective",
            spec.train.objective != TrainObjective::CrossEntropy,
        ),
    ];
    if let Some((key, _)) = refused.iter().find(|(_, set)| *set) {
        return fail(
            key,
            "applies to bracket runs; a text run always learns every next token: remove it".into(),
        );
    }
    // The text GPT is GPT-2's shape, so that its export loads as GPT-2.
    let m = &spec.model;
    let fixed = [
        ("model.pos_encoding", m.pos_encoding != PosEncoding::Learned),
        ("model.norm_first", !m.norm_first),
        ("model.activation", m.activation != Activation::Gelu),
    ];
    if let Some((key, _)) = fixed.iter().find(|(_, set)| *set) {
        return fail(
            key,
            "the text GPT is GPT-2's shape (learned positions, pre-norm blocks, GELU), so \
             that its export loads as GPT-2: remove it"
                .into(),
        );
    }
    Ok(())
}

/// Lengths and depth of a distribution (`data`, or `data.stages[i]`) that can be drawn.
fn check_shape(
    section: &str,
    min_len: usize,
    max_len: usize,
    max_depth: usize,
) -> Result<(), UserError> {
    positive(&format!("{section}.min_len"), min_len)?;
    positive(&format!("{section}.max_len"), max_len)?;
    positive(&format!("{section}.max_depth"), max_depth)?;
    if min_len > max_len {
        return fail(
            &format!("{section}.min_len"),
            format!("min_len ({min_len}) must not exceed max_len ({max_len})"),
        );
    }
    if max_depth == 1 && min_len == max_len && max_len.is_multiple_of(2) {
        return fail(
            &format!("{section}.max_len"),
            "with max_depth = 1 every prefix has odd length; allow an odd length".into(),
        );
    }
    Ok(())
}

/// Each stage of a curriculum is an easier distribution with a way to end.
fn check_stages(spec: &Spec) -> Result<(), UserError> {
    let d = &spec.data;
    let mut shares = 0.0;
    for (i, stage) in d.stages.iter().enumerate() {
        let section = format!("data.stages[{i}]");
        let s = d.stage(i);
        check_shape(&section, s.min_len, s.max_len, s.max_depth)?;
        if s.max_len > d.max_len || s.max_depth > d.max_depth {
            return fail(
                &format!("{section}.max_len"),
                format!(
                    "a stage is an easier distribution than the data's own (max_len {}, \
                     max_depth {}); this one has max_len {}, max_depth {}",
                    d.max_len, d.max_depth, s.max_len, s.max_depth
                ),
            );
        }
        if stage.until_exact.is_none() && stage.share.is_none() {
            return fail(
                &section,
                "needs a way to end: until_exact (validation exact match on the stage's data, \
                 e.g. 0.99), share (of the run, e.g. 0.3), or both"
                    .into(),
            );
        }
        if let Some(e) = stage.until_exact {
            if !(e > 0.0 && e <= 1.0) {
                return fail(
                    &format!("{section}.until_exact"),
                    format!("{e} is outside (0, 1]"),
                );
            }
            if spec.data.task == super::Task::Lm {
                return fail(
                    &format!("{section}.until_exact"),
                    "a language model (data.task = \"lm\") has no exact match: use share".into(),
                );
            }
        }
        if let Some(share) = stage.share {
            if !(share > 0.0 && share < 1.0) {
                return fail(
                    &format!("{section}.share"),
                    format!("{share} is outside (0, 1)"),
                );
            }
            shares += share;
        }
    }
    if shares >= 1.0 {
        return fail(
            "data.stages",
            format!("the stages' shares add up to {shares}: nothing would be left for the data's own distribution"),
        );
    }
    Ok(())
}

fn check_train(spec: &Spec) -> Result<(), UserError> {
    let t = &spec.train;
    match t.decay_over {
        Some(DecayOver::Time(_)) if t.max_steps > 0 => {
            return fail(
                "train.decay_over",
                "a duration applies to time-based schedules; with train.max_steps set, give \
                 a step count or remove it (on the command line: train.decay_over=)"
                    .into(),
            );
        }
        Some(DecayOver::Steps(n)) if n <= t.warmup_steps => {
            return fail(
                "train.decay_over",
                format!(
                    "{n} steps ends within the warm-up (train.warmup_steps = {}): decay over \
                     more steps than the warm-up takes",
                    t.warmup_steps
                ),
            );
        }
        _ => {}
    }
    positive("train.batch_size", t.batch_size)?;
    if !spec.is_text() && t.batch_size > spec.data.train_samples {
        return fail(
            "train.batch_size",
            format!(
                "{} is more than the {} training examples (data.train_samples); a batch holds \
                 at most all of them",
                t.batch_size, spec.data.train_samples
            ),
        );
    }
    finite_positive("train.lr", t.lr)?;
    non_negative("train.weight_decay", t.weight_decay)?;
    non_negative("train.grad_clip", t.grad_clip)?;
    unit_interval("train.min_lr_ratio", t.min_lr_ratio, true)?;
    if !(t.target_exact > 0.0 && t.target_exact <= 1.0) {
        return fail(
            "train.target_exact",
            format!("{} is outside (0, 1]", t.target_exact),
        );
    }
    if t.eval_every == EvalEvery::Steps(0) {
        return fail("train.eval_every", "must be at least 1 step".into());
    }
    Ok(())
}

fn check_eval_and_sweep(spec: &Spec) -> Result<(), UserError> {
    let longest_answer = spec.data.max_depth + 1;
    if spec.eval.max_answer_len != 0 && spec.eval.max_answer_len < longest_answer {
        return fail(
            "eval.max_answer_len",
            format!(
                "{} is shorter than the longest answer ({longest_answer} tokens: up to \
                 max_depth closers and the final ','); use at least {longest_answer}, or 0 for that",
                spec.eval.max_answer_len
            ),
        );
    }
    positive("eval.samples", spec.eval.samples)?;
    if spec.sweep.objective == Objective::TimeToTarget && spec.sweep.pruner != PrunerKind::None {
        return fail(
            "sweep.pruner",
            "must be \"none\" with objective = \"time_to_target\": a trial's time is only \
             known once it reaches the target, so there is nothing to compare earlier (trials \
             that reach it stop there anyway)"
                .into(),
        );
    }
    if let StudyStorage::Postgres(url) = &spec.sweep.storage {
        crate::sweep::pg_connect::Target::parse(url)
            .map_err(|e| UserError::new("", Some("sweep.storage"), e))?;
    }
    if spec.sweep.grace_period.get() < std::time::Duration::from_secs(2) {
        return fail(
            "sweep.grace_period",
            format!(
                "{} is too short: a live trial's heartbeat comes every grace_period / 4 (at \
                 most every 15 s), so use at least \"2s\" (the default is \"90s\")",
                spec.sweep.grace_period
            ),
        );
    }
    Ok(())
}

/// Self-supervised pretraining needs a model that reads a string on its own.
fn check_task(spec: &Spec) -> Result<(), UserError> {
    if spec.data.task != Task::Lm {
        return Ok(());
    }
    let m = &spec.model;
    if m.arch == Arch::Tra {
        return fail(
            "data.task",
            "\"lm\" trains gru, lstm and gpt on the next token and ber on masked tokens; tra \
             (encoder-decoder) needs an input and an output: use data.task = \"close\""
                .into(),
        );
    }
    if m.arch == Arch::Ber && m.mlm_prob == 0.0 {
        return fail(
            "model.mlm_prob",
            "a masked LM learns from the tokens it hides: with data.task = \"lm\" set \
             model.mlm_prob above 0 (BERT used 0.15)"
                .into(),
        );
    }
    if spec.train.loss_on == LossOn::All {
        return fail(
            "train.loss_on",
            "\"all\" adds the prefix to the closing task's loss; with data.task = \"lm\" the \
             loss is on every token already: remove it"
                .into(),
        );
    }
    Ok(())
}

/// Transfer, freezing and LoRA settings that cannot mean anything together. Whether the
/// named parts exist is checked against the model itself (`model::params::select`).
/// REINFORCE samples answers token by token and rewards exact closings.
fn check_reinforce(spec: &Spec) -> Result<(), UserError> {
    let t = &spec.train;
    if t.objective != TrainObjective::Reinforce {
        return Ok(());
    }
    if spec.model.arch == Arch::Ber {
        return fail(
            "train.objective",
            "\"reinforce\" samples answers token by token; ber fills its answer slots at once: \
             use gru, lstm, tra or gpt"
                .into(),
        );
    }
    if spec.data.task == Task::Lm {
        return fail(
            "train.objective",
            "\"reinforce\" rewards exact closings; a language model (data.task = \"lm\") \
             has none: use \"cross_entropy\""
                .into(),
        );
    }
    if !(t.temperature > 0.0 && t.temperature.is_finite()) {
        return fail(
            "train.temperature",
            format!("{} must be a positive number, e.g. 1.0", t.temperature),
        );
    }
    Ok(())
}

/// Each rule names what it constrains, in terms of the run's own pairs.
fn check_rules(spec: &Spec) -> Result<(), UserError> {
    for (i, rule) in spec.train.rules.iter().enumerate() {
        let key = format!("train.rules.{i}.pair");
        match rule.kind {
            RuleKind::Pair => {
                if !spec.data.pairs.contains(&rule.pair) {
                    return fail(
                        &key,
                        format!(
                            "'{}' is not one of data.pairs ({}): a pair rule names a pair, \
                             opener then closer",
                            rule.pair,
                            spec.data.pairs.join(" ")
                        ),
                    );
                }
            }
            RuleKind::StackOrder if !rule.pair.is_empty() => {
                return fail(
                    &key,
                    "a stack_order rule covers every pair: leave out `pair`".into(),
                );
            }
            RuleKind::StackOrder => {}
        }
    }
    if spec.train.rule_weight < 0.0 || !spec.train.rule_weight.is_finite() {
        return fail(
            "train.rule_weight",
            format!("{} must be zero or positive", spec.train.rule_weight),
        );
    }
    if !spec.train.rules.is_empty() && spec.train.objective == TrainObjective::Reinforce {
        return fail(
            "train.rules",
            "the rule penalty is added to the cross-entropy loss; with \
             objective = \"reinforce\" there is none: use one or the other"
                .into(),
        );
    }
    Ok(())
}

fn check_techniques(spec: &Spec) -> Result<(), UserError> {
    check_reinforce(spec)?;
    check_rules(spec)?;
    let smoothing = spec.train.label_smoothing;
    if !(0.0..1.0).contains(&smoothing) {
        return fail(
            "train.label_smoothing",
            format!(
                "{smoothing} is not a share of the target's mass: use a value in [0, 1), e.g. 0.1"
            ),
        );
    }
    let sparsity = spec.train.sparsity;
    if !(0.0..1.0).contains(&sparsity) {
        return fail(
            "train.sparsity",
            format!("{sparsity} is not a share of the weights: use a value in [0, 1), 0 for none"),
        );
    }
    let m = &spec.model;
    if !m.reset.is_empty() && m.init_from.is_empty() {
        return fail(
            "model.reset",
            "re-initialises parts of the weights model.init_from loads; without \
             model.init_from everything starts fresh anyway"
                .into(),
        );
    }
    let Some(lora) = &m.lora else {
        return Ok(());
    };
    positive("model.lora.rank", lora.rank)?;
    finite_positive("model.lora.alpha", lora.alpha)?;
    if lora.targets.is_empty() {
        return fail(
            "model.lora.targets",
            "names no part: list the parts to adapt, e.g. [\"attn\", \"ff\"]".into(),
        );
    }
    if !spec.train.freeze.is_empty() {
        return fail(
            "train.freeze",
            "has nothing to add to model.lora, which already freezes every base weight; \
             remove one of the two"
                .into(),
        );
    }
    Ok(())
}

fn check_model(spec: &Spec) -> Result<(), UserError> {
    let m = &spec.model;
    unit_interval("model.dropout", m.dropout, false)?;
    unit_interval("model.mlm_prob", m.mlm_prob, false)?;
    let attention_only = [
        ("model.activation", m.activation != Activation::Gelu),
        ("model.pos_encoding", m.pos_encoding != PosEncoding::Learned),
    ];
    if let Some((key, _)) = attention_only
        .iter()
        .find(|(_, set)| *set && m.arch.is_recurrent())
    {
        return fail(
            key,
            format!(
                "applies to the attention models (tra, gpt, ber), not to {}; remove it",
                m.arch.name()
            ),
        );
    }
    check_stack(spec)?;
    if m.qkv_bias && !spec.is_text() {
        return fail(
            "model.qkv_bias",
            "applies to the text GPT (data.source = \"text\"); remove it".into(),
        );
    }
    if m.mlm_prob > 0.0 && m.arch != Arch::Ber {
        return fail(
            "model.mlm_prob",
            format!("is only used by arch = \"ber\", not \"{}\"", m.arch.name()),
        );
    }
    if spec.train.loss_on == LossOn::All && matches!(m.arch, Arch::Tra | Arch::Ber) {
        return fail(
            "train.loss_on",
            format!(
                "\"all\" needs a next-token model (gpt, gru, lstm), not \"{}\"",
                m.arch.name()
            ),
        );
    }
    check_techniques(spec)?;
    check_task(spec)?;
    if m.arch.is_recurrent() {
        positive("model.d_embed", m.d_embed)?;
        positive("model.d_hidden", m.d_hidden)?;
        return positive("model.n_layers", m.n_layers);
    }
    positive("model.d_model", m.d_model)?;
    positive("model.n_heads", m.n_heads)?;
    positive("model.d_ff", m.d_ff)?;
    if !m.d_model.is_multiple_of(m.n_heads) {
        return fail(
            "model.n_heads",
            format!(
                "{} heads do not divide d_model = {}; use a divisor of d_model (e.g. {})",
                m.n_heads,
                m.d_model,
                divisors(m.d_model)
            ),
        );
    }
    if m.arch == Arch::Tra {
        positive("model.n_enc_layers", m.n_enc_layers)?;
        positive("model.n_dec_layers", m.n_dec_layers)?;
    } else {
        positive("model.n_layers", m.n_layers)?;
    }
    let needed = spec.positions_needed();
    if spec.is_text() && m.max_positions != 0 && m.max_positions < needed {
        return fail(
            "data.context_length",
            format!(
                "{needed} tokens do not fit the position table (model.max_positions = {}); \
                 use a context length of at most {}, or raise model.max_positions",
                m.max_positions, m.max_positions
            ),
        );
    }
    if m.max_positions != 0 && !m.pos_encoding.has_table() {
        return fail(
            "model.max_positions",
            format!(
                "sizes a table of positions; pos_encoding = \"{}\" has none and reads any \
                 length: remove it",
                pos_name(m.pos_encoding)
            ),
        );
    }
    if m.max_positions != 0 && m.max_positions < needed {
        return fail(
            "model.max_positions",
            format!(
                "{} positions cannot hold the longest sequence: data.max_len ({}) + 2 + \
                 eval.max_answer_len ({}) = {needed}; use at least {needed}, or 0 for exactly that",
                m.max_positions,
                spec.data.max_len,
                spec.max_answer_len()
            ),
        );
    }
    Ok(())
}

fn pos_name(p: PosEncoding) -> String {
    toml::Value::try_from(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The stack model's own sizes, and only for it.
fn check_stack(spec: &Spec) -> Result<(), UserError> {
    let m = &spec.model;
    let defaults = super::ModelSpec::default();
    if m.arch != Arch::Stack {
        let set = [
            ("model.stack_depth", m.stack_depth != defaults.stack_depth),
            ("model.stack_width", m.stack_width != defaults.stack_width),
            (
                "model.stack_controller",
                m.stack_controller != defaults.stack_controller,
            ),
        ];
        if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
            return fail(
                key,
                format!(
                    "applies to arch = \"stack\", not \"{}\"; remove it",
                    m.arch.name()
                ),
            );
        }
        return Ok(());
    }
    positive("model.stack_width", m.stack_width)?;
    if m.stack_depth == 1 {
        return fail(
            "model.stack_depth",
            "1 slot cannot hold an opener beneath another: use at least 2, or 0 for twice \
             data.max_depth plus 2"
                .into(),
        );
    }
    Ok(())
}

fn divisors(n: usize) -> String {
    let ds: Vec<String> = (1..=n.min(64))
        .filter(|d| n.is_multiple_of(*d))
        .map(|d| d.to_string())
        .collect();
    ds.join(", ")
}

fn positive(key: &str, value: usize) -> Result<(), UserError> {
    if value == 0 {
        return Err(UserError::new("", Some(key), "must be at least 1"));
    }
    Ok(())
}

fn finite_positive(key: &str, value: f64) -> Result<(), UserError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(UserError::new(
            "",
            Some(key),
            format!("{value} is not allowed: must be a positive number"),
        ));
    }
    Ok(())
}

fn non_negative(key: &str, value: f64) -> Result<(), UserError> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(UserError::new(
            "",
            Some(key),
            format!("{value} is not allowed: must be zero or positive"),
        ));
    }
    Ok(())
}

fn unit_interval(key: &str, value: f64, inclusive_one: bool) -> Result<(), UserError> {
    let ok = value >= 0.0 && (value < 1.0 || (inclusive_one && value == 1.0));
    if !ok {
        let range = if inclusive_one { "[0, 1]" } else { "[0, 1)" };
        return Err(UserError::new(
            "",
            Some(key),
            format!("{value} is outside {range}"),
        ));
    }
    Ok(())
}

/// Longest experiment name: a directory name, with room for a sweep's `-trial-N` names.
const MAX_NAME_LEN: usize = 100;

/// A name becomes a directory under `out_dir`: it must not escape it.
fn check_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{} bytes long; use at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not allowed: use letters, digits, '-', '_' and '.', no path separators"
        ))
    }
}

/// A pair is exactly two distinct characters, and no character appears in two pairs.
fn check_pairs(pairs: &[String]) -> Result<(), String> {
    if pairs.is_empty() {
        return Err("needs at least one pair, e.g. [\"()\", \"{}\"]".into());
    }
    let mut seen = HashSet::new();
    for pair in pairs {
        let chars: Vec<char> = pair.chars().collect();
        if chars.len() != 2 || chars[0] == chars[1] {
            return Err(format!(
                "'{pair}' is not a pair: write exactly two distinct characters, opener then closer"
            ));
        }
        for c in chars {
            if c.is_whitespace() || c == ',' {
                return Err(format!("'{pair}': '{c}' cannot be a bracket"));
            }
            if !seen.insert(c) {
                return Err(format!(
                    "'{c}' is used twice; each character may appear once"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_key(edit: impl FnOnce(&mut Spec)) -> Option<String> {
        let mut spec = Spec::default();
        spec.experiment.name = "t".into();
        edit(&mut spec);
        validate(&spec).err().and_then(|e| e.key)
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(error_key(|_| {}), None);
    }

    #[test]
    fn each_impossible_value_names_its_key() {
        type Edit = Box<dyn FnOnce(&mut Spec)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("data.min_len", Box::new(|s| s.data.min_len = 30)),
            ("data.max_len", Box::new(|s| s.data.max_len = 0)),
            ("data.pairs", Box::new(|s| s.data.pairs = vec![])),
            ("data.pairs", Box::new(|s| s.data.pairs = vec!["((".into()])),
            ("data.pairs", Box::new(|s| s.data.pairs = vec!["(".into()])),
            (
                "data.pairs",
                Box::new(|s| s.data.pairs = vec!["()".into(), "(]".into()]),
            ),
            ("data.train_samples", Box::new(|s| s.data.train_samples = 0)),
            (
                "data.balance_answers",
                Box::new(|s| s.data.balance_answers = 1.5),
            ),
            (
                "data.balance_answers",
                Box::new(|s| s.data.balance_answers = f64::NAN),
            ),
            (
                "train.batch_size",
                Box::new(|s| s.train.batch_size = 100_000_000),
            ),
            (
                "experiment.name",
                Box::new(|s| s.experiment.name = "x".repeat(256)),
            ),
            ("model.d_hidden", Box::new(|s| s.model.d_hidden = 0)),
            ("model.dropout", Box::new(|s| s.model.dropout = 1.0)),
            ("train.lr", Box::new(|s| s.train.lr = -1.0)),
            (
                "train.eval_every",
                Box::new(|s| s.train.eval_every = EvalEvery::Steps(0)),
            ),
            (
                "experiment.name",
                Box::new(|s| s.experiment.name = "../x".into()),
            ),
            (
                "eval.max_answer_len",
                Box::new(|s| s.eval.max_answer_len = 3),
            ),
            (
                "model.n_heads",
                Box::new(|s| {
                    s.model.arch = Arch::Gpt;
                    s.model.n_heads = 5;
                }),
            ),
            (
                "model.n_heads",
                Box::new(|s| {
                    s.model.arch = Arch::Tra;
                    s.model.n_heads = 0;
                }),
            ),
            (
                "model.max_positions",
                Box::new(|s| {
                    s.model.arch = Arch::Ber;
                    s.model.max_positions = 20;
                }),
            ),
            (
                "model.n_enc_layers",
                Box::new(|s| {
                    s.model.arch = Arch::Tra;
                    s.model.n_enc_layers = 0;
                }),
            ),
            ("model.mlm_prob", Box::new(|s| s.model.mlm_prob = 0.15)),
            (
                "model.pos_encoding",
                Box::new(|s| s.model.pos_encoding = PosEncoding::Rope),
            ),
            (
                "model.max_positions",
                Box::new(|s| {
                    s.model.arch = Arch::Gpt;
                    s.model.pos_encoding = PosEncoding::Alibi;
                    s.model.max_positions = 64;
                }),
            ),
            ("model.stack_depth", Box::new(|s| s.model.stack_depth = 8)),
            (
                "model.stack_depth",
                Box::new(|s| {
                    s.model.arch = Arch::Stack;
                    s.model.stack_depth = 1;
                }),
            ),
            (
                "model.stack_width",
                Box::new(|s| {
                    s.model.arch = Arch::Stack;
                    s.model.stack_width = 0;
                }),
            ),
            (
                "model.activation",
                Box::new(|s| s.model.activation = Activation::Relu),
            ),
            (
                "train.loss_on",
                Box::new(|s| {
                    s.model.arch = Arch::Ber;
                    s.train.loss_on = LossOn::All;
                }),
            ),
        ];
        for (key, edit) in cases {
            assert_eq!(error_key(edit).as_deref(), Some(key));
        }
    }

    #[test]
    fn device_names_round_trip() {
        use crate::spec::DeviceName;
        for text in ["cpu", "ndarray", "cuda", "cuda:1"] {
            assert_eq!(DeviceName::parse(text).unwrap().to_string(), text);
        }
        assert!(DeviceName::parse("tpu").unwrap_err().contains("cuda:N"));
        assert!(DeviceName::parse("cuda:x").is_err());
    }
}

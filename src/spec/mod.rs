//! Experiment specs: the serde structs read from TOML, their defaults, layering (defaults <
//! spec file < `RUNNER_` environment < `key.path=value` overrides) and validation.
//!
//! This module never touches burn or the file system beyond reading the spec file: every
//! mistake is reported here, before any work starts, as a [`UserError`] naming the source
//! and the key.

mod catalog;
mod duration;
mod load;
mod validate;

pub use catalog::describe_configs;
pub use duration::{parse_duration, HumanDuration};
pub use load::{
    known_keys, load, load_resolved, parse_override, resolve_path, spec_variables, with_overrides,
    Resolved,
};
pub use validate::validate;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The whole resolved experiment: one section per concern.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Spec {
    pub experiment: ExperimentSpec,
    pub data: DataSpec,
    pub model: ModelSpec,
    pub train: TrainSpec,
    pub eval: EvalSpec,
    /// Only `runner sweep` reads it; left out of a plain run's resolved spec.
    #[serde(skip_serializing_if = "SweepSpec::is_default")]
    pub sweep: SweepSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentSpec {
    /// Empty means "the spec file's stem"; filled in at load time.
    pub name: String,
    pub seed: u64,
    /// `cpu` (burn-flex), `ndarray`, `cuda` or `cuda:N`.
    pub device: DeviceName,
    /// CPU threads. With more than one, a training step splits its batch's rows across
    /// them (train::gradients_in_parts). 1 by default: two single-threaded runs side by
    /// side (sweeps with `--jobs 2`) use a 2-core machine as well, and a config then runs
    /// on any machine. `"auto"` is the cores this process may use, read at load time and
    /// written into resolved.toml as the number (so a resolved spec reruns the same way).
    #[serde(deserialize_with = "threads::deserialize")]
    pub threads: usize,
    /// `fused` (hand-written CPU kernels with their own backward pass, burn-flex only) or
    /// `composed` (burn's own operations, what every other backend runs).
    pub kernels: Kernels,
    pub out_dir: String,
}

/// Serde for `experiment.threads`: a count, or "auto" for the cores available here.
mod threads {
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = usize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a thread count (e.g. 2) or \"auto\" (this machine's cores)")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<usize, E> {
                usize::try_from(n).map_err(|_| E::custom(format!("{n} threads: too many")))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<usize, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom(format!("{n} threads: must be at least 1")))
                    .and_then(|n| self.visit_u64(n))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<usize, E> {
                match text.trim() {
                    "auto" => Ok(crate::limits::cores()),
                    other => Err(E::custom(format!(
                        "'{other}': write a thread count (e.g. 2) or \"auto\""
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `experiment.kernels`: how the CPU backend runs the layers that have a fused kernel.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// One operation per layer on raw storage (crates/kernels/src/): the fast path.
    Fused,
    /// burn's operations one by one: the reference the fused kernels are tested against.
    Composed,
}

impl Default for ExperimentSpec {
    fn default() -> Self {
        Self {
            name: String::new(),
            seed: 42,
            device: DeviceName::Cpu,
            threads: 1,
            kernels: Kernels::Fused,
            out_dir: "experiments".into(),
        }
    }
}

/// `experiment.device`, read once: which backend and, for CUDA, which GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// burn-flex, the pure-Rust CPU backend.
    Cpu,
    Ndarray,
    Cuda(usize),
}

impl DeviceName {
    pub const ALLOWED: &'static str = "\"cpu\" (burn-flex), \"ndarray\", \"cuda\" or \"cuda:N\"";

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "cpu" => Ok(Self::Cpu),
            "ndarray" => Ok(Self::Ndarray),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device '{other}'; allowed: {}", Self::ALLOWED)),
        }
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Ndarray => f.write_str("ndarray"),
            Self::Cuda(0) => f.write_str("cuda"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceName {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

impl Serialize for DeviceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataSpec {
    /// `brackets` (the generated task) or `text` (next-token pretraining on corpus files;
    /// the bracket keys below are then unused).
    pub source: DataSource,
    /// text: UTF-8 corpus files (one path or a list), relative to the working directory.
    #[serde(deserialize_with = "one_or_many")]
    pub corpus: Vec<String>,
    /// text: tokens the model reads at once (one training window).
    pub context_length: usize,
    /// text: the tokenizer's vocabulary size, special tokens included; also the model's
    /// embedding rows (a tokenizer that learns fewer leaves rows unused).
    pub vocab_size: usize,
    /// text: `bpe` (byte-level, as GPT-2), `unigram` (as SentencePiece), `char`, or the
    /// path of a `tokenizer.json` to reuse.
    pub tokenizer: TokenizerChoice,
    /// text: the share of each corpus file, from its end, held out for validation.
    pub val_fraction: f64,
    /// `close` (prefix -> its closing sequence) or `lm` (bracket strings without answers:
    /// self-supervised pretraining).
    pub task: Task,
    /// Each pair is an opener and a closer, two distinct characters.
    pub pairs: Vec<String>,
    /// Prefix length in brackets, inclusive bounds.
    pub min_len: usize,
    pub max_len: usize,
    /// Nesting depth never exceeds this anywhere in a prefix.
    pub max_depth: usize,
    pub train_samples: usize,
    pub val_samples: usize,
    pub test_samples: usize,
    /// The training split's answer lengths (brackets left open) at shares p^(1 − b), p
    /// their share in the task: 0 = the task's own draws; 1 = every answer length equally
    /// often, so the rare deep prefixes are seen as often as the shallow ones. Among
    /// prefixes of one answer length the task's distribution is kept. Validation, test and
    /// `runner eval` keep the task's distribution, so scores stay comparable.
    pub balance_answers: f64,
    /// A curriculum: easier distributions trained first, in order, each until its
    /// condition holds; then the distribution above. Empty: no curriculum.
    pub stages: Vec<Stage>,
}

impl DataSpec {
    /// The distribution of curriculum stage `i`: the data's own, with the stage's keys.
    pub fn stage(&self, i: usize) -> DataSpec {
        let s = &self.stages[i];
        DataSpec {
            // The data's min_len, unless it exceeds the stage's max_len.
            min_len: s
                .min_len
                .unwrap_or(self.min_len.min(s.max_len.unwrap_or(self.max_len))),
            max_len: s.max_len.unwrap_or(self.max_len),
            max_depth: s.max_depth.unwrap_or(self.max_depth),
            stages: Vec::new(),
            ..self.clone()
        }
    }
}

/// One `[[data.stages]]` entry: a distribution (the keys it leaves out are the data's own)
/// and when to move on from it, checked at each evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<usize>,
    /// Move on when validation exact match on this stage's data reaches this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_exact: Option<f64>,
    /// Move on after this share of the run (of `train.max_steps` when set, else of the
    /// budget's time) in this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
}
impl Default for DataSpec {
    fn default() -> Self {
        // The range of the original project's examples.
        Self {
            source: DataSource::Brackets,
            corpus: Vec::new(),
            context_length: 256,
            vocab_size: 2048,
            tokenizer: TokenizerChoice::Bpe,
            val_fraction: 0.1,
            task: Task::Close,
            pairs: vec!["()".into(), "【】".into(), "{}".into()],
            min_len: 2,
            max_len: 20,
            max_depth: 6,
            train_samples: 20_000,
            val_samples: 500,
            test_samples: 1_000,
            balance_answers: 0.0,
            stages: Vec::new(),
        }
    }
}

/// Where a run's data comes from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// Bracket prefixes drawn from the seed (`data.pairs`, lengths, depth, samples).
    Brackets,
    /// Natural-language corpus files (`data.corpus`), tokenized and cut into windows.
    Text,
}

/// `data.tokenizer`: train one on the corpus, or reuse a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum TokenizerChoice {
    Bpe,
    Unigram,
    Char,
    File(String),
}

impl From<String> for TokenizerChoice {
    fn from(text: String) -> Self {
        match text.as_str() {
            "bpe" => Self::Bpe,
            "unigram" => Self::Unigram,
            "char" => Self::Char,
            _ => Self::File(text),
        }
    }
}

impl From<TokenizerChoice> for String {
    fn from(choice: TokenizerChoice) -> Self {
        match choice {
            TokenizerChoice::Bpe => "bpe".into(),
            TokenizerChoice::Unigram => "unigram".into(),
            TokenizerChoice::Char => "char".into(),
            TokenizerChoice::File(path) => path,
        }
    }
}

/// A list key that also takes a single value (`data.corpus = "notes.txt"`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// What a run learns from its data.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// `input` + prefix + `,output` -> the closers and `,`: the labelled task.
    Close,
    /// `input` + a bracket string + `,`, no answer: next-token prediction (gru, lstm, gpt)
    /// or masked tokens (ber). Half the strings are open prefixes, half are complete
    /// (a prefix followed by its closing sequence).
    Lm,
}

/// The architectures: the one table of their names (spec, CLI and files alike).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gru,
    Lstm,
    /// Encoder-decoder Transformer.
    #[serde(alias = "transformer")]
    #[value(alias = "transformer")]
    Tra,
    /// Decoder-only causal Transformer.
    Gpt,
    /// Bidirectional encoder trained as a masked language model.
    #[serde(alias = "bert")]
    #[value(alias = "bert")]
    Ber,
    /// A GRU controller with a differentiable stack (push, pop, no-op as soft actions).
    Stack,
}

impl Arch {
    /// Every architecture, in the order tables list them.
    pub fn all() -> &'static [Arch] {
        <Arch as clap::ValueEnum>::value_variants()
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gru => "gru",
            Arch::Lstm => "lstm",
            Arch::Tra => "tra",
            Arch::Gpt => "gpt",
            Arch::Ber => "ber",
            Arch::Stack => "stack",
        }
    }

    /// Reads one token at a time with a carried state, and so has no position limit.
    pub fn is_recurrent(self) -> bool {
        matches!(self, Arch::Gru | Arch::Lstm | Arch::Stack)
    }

    /// The `model.*` keys that shape this architecture's parameters (besides the
    /// vocabulary and, for learned positions, the positional table).
    pub fn size_keys(self) -> &'static [&'static str] {
        match self {
            Arch::Gru | Arch::Lstm => &["d_embed", "d_hidden", "n_layers"],
            Arch::Stack => &[
                "d_embed",
                "d_hidden",
                "n_layers",
                "stack_depth",
                "stack_width",
                "stack_controller",
            ],
            Arch::Tra => &[
                "d_model",
                "n_heads",
                "d_ff",
                "n_enc_layers",
                "n_dec_layers",
                "pos_encoding",
            ],
            Arch::Gpt | Arch::Ber => &["d_model", "n_heads", "d_ff", "n_layers", "pos_encoding"],
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PosEncoding {
    /// A trained vector per position, added to the token's: reads at most
    /// `model.max_positions`.
    Learned,
    /// Fixed sines and cosines added to the token's (Vaswani et al. 2017), up to
    /// `model.max_positions`.
    Sinusoidal,
    /// Rotary: each head's queries and keys are rotated by their position, so scores see
    /// only offsets (Su et al. 2021). No table: any length.
    Rope,
    /// A per-head penalty on each score, linear in the distance (Press et al. 2022). No
    /// table: any length.
    Alibi,
    /// No position information: a causal mask still orders a GPT; ber and tra's encoder see
    /// a bag of tokens.
    None,
}

impl PosEncoding {
    /// Does the scheme keep a table of positions, which caps the input length?
    pub fn has_table(self) -> bool {
        matches!(self, PosEncoding::Learned | PosEncoding::Sinusoidal)
    }
}

/// The stack model's controller.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StackController {
    Feedforward,
    Gru,
}

/// The feed-forward activation of the attention models.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Exact GELU (through erf), as in BERT and GPT-2.
    Gelu,
    /// Cheaper on the CPU backend, whose erf is a scalar call per element.
    Relu,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LossOn {
    /// Closers and the final `,` only.
    Answer,
    /// Every next token of the record (gpt only): the prefix too, as language modelling.
    All,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    pub arch: Arch,
    /// gru, lstm: embedding width and units per layer.
    pub d_embed: usize,
    pub d_hidden: usize,
    /// gru, lstm, gpt, ber: stacked layers.
    pub n_layers: usize,
    /// Between recurrent layers and before the head; inside Transformer blocks.
    pub dropout: f64,
    /// tra, gpt, ber: model width, attention heads (must divide d_model), feed-forward width.
    pub d_model: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    /// tra: encoder and decoder layers.
    pub n_enc_layers: usize,
    pub n_dec_layers: usize,
    /// tra, gpt, ber: `learned`, `sinusoidal`, `rope`, `alibi` or `none`.
    pub pos_encoding: PosEncoding,
    /// Pre-norm blocks (more stable at small sizes and high learning rates).
    pub norm_first: bool,
    /// tra, gpt, ber: `gelu` or `relu` in the feed-forward blocks.
    pub activation: Activation,
    /// Positions the model can read; 0 = exactly what the data needs
    /// (`data.max_len + eval.max_answer_len + 2`, or `data.context_length` for text).
    pub max_positions: usize,
    /// stack: slots on the soft stack; 0 = twice `data.max_depth` plus 2, so that the deeper
    /// prefixes of `eval --suite` fit. Pushing onto a full stack drops the bottom slot.
    pub stack_depth: usize,
    /// stack: the width of the vector pushed onto each slot.
    pub stack_width: usize,
    /// stack: `feedforward` (the controller sees the token and the stack's top, nothing
    /// else: whatever is open must be kept on the stack) or `gru` (a recurrent controller,
    /// as in the papers, which can also keep it in its own state).
    pub stack_controller: StackController,
    /// Text GPT: biases on the query, key and value projections (GPT-2 had them; the
    /// project we grew out of trained without).
    pub qkv_bias: bool,
    /// ber: probability of also masking each prefix bracket in training (self-supervised).
    pub mlm_prob: f64,
    /// A run directory whose best weights start this run (continued training, transfer
    /// from a pretrained model): parameters are matched by name and shape, the rest start
    /// fresh. Empty: a fresh initialisation.
    pub init_from: String,
    /// Parts of the model not taken from `init_from` but initialised fresh, e.g. `["head"]`.
    pub reset: Vec<String>,
    /// Low-rank adapters on the named parts' weight matrices; everything else frozen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSpec>,
}

/// `model.lora = { rank = 4, alpha = 8, targets = ["attn", "ff"] }`: LoRA through burn's
/// `Lora` reparameterisation (`W + alpha/rank · A·B`, A and B trained, W frozen).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f64,
    /// Parts whose 2-D weights get adapters (see `train.freeze` for the names).
    pub targets: Vec<String>,
}

impl Default for LoraSpec {
    fn default() -> Self {
        Self {
            rank: 4,
            alpha: 8.0,
            targets: vec!["attn".into(), "ff".into()],
        }
    }
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            arch: Arch::Gru,
            d_embed: 32,
            d_hidden: 128,
            n_layers: 1,
            dropout: 0.0,
            d_model: 64,
            n_heads: 4,
            d_ff: 256,
            n_enc_layers: 2,
            n_dec_layers: 2,
            pos_encoding: PosEncoding::Learned,
            norm_first: true,
            activation: Activation::Gelu,
            max_positions: 0,
            stack_depth: 0,
            stack_width: 8,
            stack_controller: StackController::Feedforward,
            qkv_bias: false,
            mlm_prob: 0.0,
            init_from: String::new(),
            reset: Vec::new(),
            lora: None,
        }
    }
}

/// How often to evaluate: a step count (reproducible) or a wall-clock interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum EvalEvery {
    Steps(u64),
    Time(HumanDuration),
}

impl<'de> Deserialize<'de> for EvalEvery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = EvalEvery;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a step count (e.g. 200) or a duration string (e.g. \"10s\")")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<EvalEvery, E> {
                Ok(EvalEvery::Steps(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<EvalEvery, E> {
                u64::try_from(n)
                    .map(EvalEvery::Steps)
                    .map_err(|_| E::custom(format!("{n} steps: must be at least 1 step")))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<EvalEvery, E> {
                HumanDuration::parse(text)
                    .map(EvalEvery::Time)
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `train.decay_over`: the learning rate reaches its floor after this many steps
/// (reproducible, and the same on a slower machine) or this much wall time.
#[derive(Debug, Clone, PartialEq)]
pub enum DecayOver {
    Steps(u64),
    Time(HumanDuration),
}

/// Serde for `Option<DecayOver>`: a step count, a duration string, or "" for none (so that
/// an override `train.decay_over=` switches it off).
mod decay_over {
    use super::{DecayOver, HumanDuration};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<DecayOver>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(DecayOver::Steps(n)) => s.serialize_u64(*n),
            Some(DecayOver::Time(d)) => s.serialize_str(&d.to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DecayOver>, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Option<DecayOver>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a step count (e.g. 1500), a duration string (e.g. \"30s\") or \"\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                if n == 0 {
                    return Err(E::custom(
                        "0 steps: decay over at least 1 step, or \"\" for the whole run",
                    ));
                }
                Ok(Some(DecayOver::Steps(n)))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!("{n} steps: must be at least 1 step"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                if text.trim().is_empty() {
                    return Ok(None);
                }
                HumanDuration::parse(text)
                    .map(|d| Some(DecayOver::Time(d)))
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LrDecay {
    Cosine,
    Linear,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Wall-clock bound on training, e.g. "90s", "10min", "1h30min", "2days".
    pub budget: HumanDuration,
    /// 0 = no step limit. When set, the schedule runs over steps, which makes runs
    /// reproducible; otherwise it runs over the budget's wall time.
    pub max_steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    /// AdamW decoupled weight decay (burn's default differs from PyTorch's: set explicitly).
    pub weight_decay: f64,
    /// Per-parameter gradient norm clip; 0 = off.
    pub grad_clip: f64,
    pub warmup_steps: u64,
    pub lr_decay: LrDecay,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Steps (e.g. 1500) or wall time (e.g. "30s") over which the rate decays to its floor;
    /// after it the rate stays at the floor. Empty: the whole run (its `max_steps` when
    /// set, else its budget). Steps give the same schedule on a slower machine.
    #[serde(with = "decay_over")]
    pub decay_over: Option<DecayOver>,
    pub eval_every: EvalEvery,
    /// Stop after this many evaluations without a better val_exact; 0 = never.
    pub patience: u32,
    /// Stop when val_exact reaches this (and what a time-to-target sweep times).
    pub target_exact: f64,
    /// false: train on after reaching `target_exact`, to `max_steps` or the budget. The best
    /// checkpoint then keeps improving on val_loss at 100% exact match, which is what
    /// prefixes longer or deeper than training's may need.
    pub stop_at_target: bool,
    /// gpt: `answer` (closers and `,`) or `all` (every next token).
    pub loss_on: LossOn,
    /// Parts of the model left as they start (e.g. `["embed", "layers.0"]`): a part is a
    /// module (`embed`, `head`), a layer (`layers.0`), `attn` or `ff`.
    pub freeze: Vec<String>,
    /// Prune this share of the weight-matrix entries (the smallest, across all matrices) at
    /// the start, and keep them at zero while training: fine-tune a pruned model loaded
    /// with `model.init_from`. 0 = no pruning.
    pub sparsity: f64,
    /// Label smoothing of the training loss (validation loss stays unsmoothed); 0 = off.
    pub label_smoothing: f64,
    /// On-the-fly augmentation of training examples: "permute_pairs" relabels each
    /// example's bracket types with a random permutation of the pairs; "mix_lengths" puts
    /// a closed string in front of half of them (within data.max_len).
    pub augment: Vec<Augment>,
    /// How the model learns: "cross_entropy" from the labelled answers, or "reinforce":
    /// it samples answers and is rewarded for exact closings (policy gradient).
    pub objective: TrainObjective,
    /// REINFORCE: the sampling temperature.
    pub temperature: f64,
    /// REINFORCE: reward the share of the answer written right before the first mistake,
    /// not only exact closings.
    pub partial_credit: bool,
    /// Rules in words, each mapped to a constraint on the closers (`[[train.rules]]`):
    /// the probability given to closers a rule forbids is added to the training loss.
    pub rules: Vec<Rule>,
    /// The weight of the rules' penalty in the training loss.
    pub rule_weight: f64,
}

/// One `[[train.rules]]` entry: `text` is for the reader; `kind` and `pair` say what it
/// constrains.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub text: String,
    #[serde(default)]
    pub kind: RuleKind,
    /// `kind = "pair"`: the pair, opener then closer, e.g. "【】".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pair: String,
}

/// What a rule constrains.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// The pair's closer closes its opener and nothing else.
    #[default]
    Pair,
    /// Close the innermost open bracket first.
    StackOrder,
}

/// `train.objective`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TrainObjective {
    #[default]
    CrossEntropy,
    Reinforce,
}

/// A training-time augmentation (`train.augment`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Augment {
    PermutePairs,
    MixLengths,
}

/// A duration written in this file's defaults.
fn duration(text: &str) -> HumanDuration {
    HumanDuration::parse(text).expect("the built-in defaults are valid durations")
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            budget: duration("1min"),
            max_steps: 0,
            batch_size: 64,
            lr: 3e-3,
            weight_decay: 0.01,
            grad_clip: 1.0,
            warmup_steps: 50,
            lr_decay: LrDecay::Cosine,
            min_lr_ratio: 0.1,
            decay_over: None,
            eval_every: EvalEvery::Time(duration("5s")),
            patience: 0,
            target_exact: 1.0,
            stop_at_target: true,
            loss_on: LossOn::Answer,
            freeze: Vec::new(),
            sparsity: 0.0,
            label_smoothing: 0.0,
            augment: Vec::new(),
            objective: TrainObjective::CrossEntropy,
            temperature: 1.0,
            partial_credit: false,
            rules: Vec::new(),
            rule_weight: 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
    /// Fresh test examples scored by `runner eval` without `--data` (the origin used 100).
    pub samples: usize,
    /// Longest answer decoded, in tokens including the final `,`; 0 = `data.max_depth + 1`.
    pub max_answer_len: usize,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            samples: 100,
            max_answer_len: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    Tpe,
    Random,
    Grid,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PrunerKind {
    None,
    Median,
    Asha,
}

/// What a study optimises, read from each trial's metrics.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Best validation exact match (maximise).
    ValExact,
    /// Lowest validation loss (minimise).
    ValLoss,
    /// Fewest training seconds until validation exact match first reaches
    /// `train.target_exact` (minimise): which settings learn the rule fastest. A trial
    /// that never gets there scores its budget plus the budget times its shortfall.
    TimeToTarget,
}

impl Objective {
    pub fn maximise(self) -> bool {
        matches!(self, Objective::ValExact)
    }

    /// `value` as a loss, lower is better: what samplers, pruners and rankings compare.
    /// The one place where a maximised objective is flipped.
    pub fn loss(self, value: f64) -> f64 {
        if self.maximise() {
            -value
        } else {
            value
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Objective::ValExact => "val_exact",
            Objective::ValLoss => "val_loss",
            Objective::TimeToTarget => "time_to_target",
        }
    }

    /// The objective a study database names (studies record `name()`).
    pub fn from_name(name: &str) -> Result<Self, String> {
        toml::Value::String(name.into()).try_into().map_err(|_| {
            format!("unknown objective '{name}'; allowed: val_exact, val_loss, time_to_target")
        })
    }
}

/// One searchable key: exactly one of `int`, `float` or `choice`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int: Option<[i64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Vec<toml::Value>>,
    /// Sample on a log scale (int and float ranges only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log: bool,
    /// Grid sampler: points per numeric range (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSpec {
    /// Total trials of the study, across resumes and workers.
    pub trials: usize,
    /// Trials run at once (worker processes).
    pub jobs: usize,
    pub sampler: SamplerKind,
    pub seed: u64,
    pub objective: Objective,
    pub pruner: PrunerKind,
    /// Random trials before TPE models the results; completed trials before pruning starts.
    pub startup_trials: usize,
    /// TPE: model the parameters jointly (Optuna's `multivariate=True`), not one by one.
    /// On by default: it found better trials in the sampler benchmark (docs/sweeps.md).
    pub multivariate: bool,
    /// Evaluations a trial always gets before it can be pruned.
    pub prune_warmup_evals: usize,
    /// ASHA: keep the top 1/reduction_factor at each rung.
    pub reduction_factor: usize,
    /// Keyed by the spec's own key paths, e.g. `"train.lr" = { float = [1e-4, 1e-2], log = true }`.
    pub space: std::collections::BTreeMap<String, ParamSpec>,
    /// Where the study's records live: "sqlite" (`study.db` in the study directory) or a
    /// PostgreSQL URL shared by workers on several machines.
    pub storage: StudyStorage,
    /// A running trial silent for longer than this is taken to be dead and re-run (with
    /// the same parameters and seed) by the next worker, on any host.
    pub grace_period: HumanDuration,
}

/// `sweep.storage`, read once: the default SQLite file or a PostgreSQL URL (checked in
/// validation, which names the key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StudyStorage {
    #[default]
    Sqlite,
    Postgres(String),
}

impl StudyStorage {
    pub fn as_str(&self) -> &str {
        match self {
            StudyStorage::Sqlite => "sqlite",
            StudyStorage::Postgres(url) => url,
        }
    }

    /// "sqlite", or a `postgresql://` / `postgres://` URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text == "sqlite" {
            Ok(StudyStorage::Sqlite)
        } else if text.starts_with("postgresql://") || text.starts_with("postgres://") {
            Ok(StudyStorage::Postgres(text.to_string()))
        } else {
            Err(format!(
                "'{}' is not a study storage: use \"sqlite\" (study.db in the study directory, \
                 the default) or a PostgreSQL URL such as postgresql://user@host:5432/database",
                crate::sweep::storage::without_password(text)
            ))
        }
    }
}

impl Serialize for StudyStorage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StudyStorage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Default for SweepSpec {
    fn default() -> Self {
        Self {
            trials: 20,
            jobs: 1,
            sampler: SamplerKind::Tpe,
            seed: 42,
            objective: Objective::ValExact,
            pruner: PrunerKind::Median,
            startup_trials: 5,
            multivariate: true,
            prune_warmup_evals: 2,
            reduction_factor: 3,
            space: Default::default(),
            storage: StudyStorage::Sqlite,
            grace_period: HumanDuration::parse("90s").expect("a valid duration"),
        }
    }
}

impl SweepSpec {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

impl Spec {
    /// The training budget.
    pub fn budget(&self) -> Duration {
        self.train.budget.get()
    }

    /// Longest answer the decoder may write, `,` included.
    pub fn max_answer_len(&self) -> usize {
        match self.eval.max_answer_len {
            0 => self.data.max_depth + 1,
            n => n,
        }
    }

    /// Longest sequence any model reads: `input`, the prefix, `,output`, and the answer
    /// (or as many mask slots).
    pub fn positions_needed(&self) -> usize {
        if self.is_text() {
            return self.data.context_length;
        }
        self.data.max_len + 2 + self.max_answer_len()
    }

    /// Token ids the model embeds and predicts: the tokenizer's `data.vocab_size` for text,
    /// else padding, each bracket, `input`, `,output` and `,`.
    pub fn n_tokens(&self) -> usize {
        if self.is_text() {
            self.data.vocab_size
        } else {
            2 * self.data.pairs.len() + 4
        }
    }

    /// Does this run learn from corpus files (`data.source = "text"`)?
    pub fn is_text(&self) -> bool {
        self.data.source == DataSource::Text
    }

    /// Slots on the stack model's stack (`model.stack_depth`, 0 = automatic).
    pub fn stack_depth(&self) -> usize {
        match self.model.stack_depth {
            0 => 2 * self.data.max_depth + 2,
            n => n,
        }
    }

    /// The positional table size of attention models.
    pub fn max_positions(&self) -> usize {
        match self.model.max_positions {
            0 => self.positions_needed(),
            n => n,
        }
    }

    /// Bracket pairs as (opener, closer) characters. Valid after [`validate`].
    pub fn pairs(&self) -> Vec<(char, char)> {
        self.data
            .pairs
            .iter()
            .filter_map(|p| {
                let mut cs = p.chars();
                Some((cs.next()?, cs.next()?))
            })
            .collect()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Spec always serialises to TOML")
    }
}

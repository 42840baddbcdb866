//! Layering and error reporting: defaults < spec file < `RUNNER_*` environment < overrides.

use super::{validate, Spec};
use crate::error::UserError;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use std::path::{Path, PathBuf};

/// A spec after layering and validation, with the file it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub spec: Spec,
    pub path: PathBuf,
    /// Overrides as given, for the log.
    pub overrides: Vec<String>,
    /// Values set above the file (environment, then command line).
    pub sources: Vec<Entry>,
}

impl Resolved {
    /// Where `key`'s value came from: the override or variable that set it, else the file.
    pub fn origin_of(&self, key: Option<&str>) -> String {
        source_of(&self.path.display().to_string(), &self.sources, key)
    }

    /// `err` blamed on the layer that set its key (for checks made after loading).
    pub fn blame(&self, mut err: UserError) -> UserError {
        err.origin = self.origin_of(err.key.as_deref());
        err
    }
}

const ENV_PREFIX: &str = "RUNNER_";
const ENV_ORIGIN: &str = "environment";
const OVERRIDE_ORIGIN: &str = "command-line override";

/// Finds the spec file: a path as given, or a bare name such as `gru_1min` looked up as
/// `configs/gru_1min.toml`.
pub fn resolve_path(arg: &str) -> Result<PathBuf, UserError> {
    let given = PathBuf::from(arg);
    if given.is_file() {
        return Ok(given);
    }
    let bare = !arg.contains(['/', '\\']) && given.extension().is_none();
    if bare {
        let candidate = Path::new("configs").join(format!("{arg}.toml"));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let hint = if bare {
        format!(" (nor configs/{arg}.toml)")
    } else {
        String::new()
    };
    Err(UserError::new(
        arg,
        None,
        format!("spec file not found{hint}"),
    ))
}

/// Loads, layers and validates a spec. Nothing is written.
pub fn load(arg: &str, overrides: &[String]) -> Result<Resolved, UserError> {
    let path = resolve_path(arg)?;
    let env = env_layer(std::env::vars())?;
    let cli = Layer {
        origin: OVERRIDE_ORIGIN,
        entries: parse_overrides(overrides)?,
    };
    let spec = resolve(&path, &[&env, &cli])?;
    Ok(Resolved {
        spec,
        path,
        overrides: overrides.to_vec(),
        sources: env.entries.into_iter().chain(cli.entries).collect(),
    })
}

/// A run's own `resolved.toml`, exactly as it was resolved: no environment, no overrides
/// (a resumed run continues the run it resumes).
pub fn load_resolved(path: &Path) -> Result<Spec, UserError> {
    resolve(path, &[])
}

/// The names of `RUNNER_*` variables that would change a spec, for a warning where they
/// are ignored.
pub fn spec_variables() -> Vec<String> {
    std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| env_key(name).is_some())
        .collect()
}

/// The spec file at `path` under `layers`, validated; errors name the layer at fault.
fn resolve(path: &Path, layers: &[&Layer]) -> Result<Spec, UserError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| UserError::new(&file, None, format!("cannot read: {e}")))?;
    // Syntax errors are reported by the toml crate with line and column.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(UserError::new(&file, None, format!("not valid TOML: {e}")));
    }
    let mut figment =
        Figment::from(Serialized::defaults(Spec::default())).merge(Toml::string(&text));
    for layer in layers {
        figment = figment.merge(*layer);
    }
    let entries: Vec<Entry> = layers.iter().flat_map(|l| l.entries.clone()).collect();
    let blame = |key: Option<&str>| source_of(&file, &entries, key);
    let mut spec: Spec = figment.extract().map_err(|e| describe(e, &blame))?;
    if spec.experiment.name.is_empty() {
        spec.experiment.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into());
    }
    validate(&spec).map_err(|mut e| {
        if e.origin.is_empty() {
            e.origin = blame(e.key.as_deref());
        }
        e
    })?;
    Ok(spec)
}

/// Who set `key` last among `entries` (in precedence order), else the file.
fn source_of(file: &str, entries: &[Entry], key: Option<&str>) -> String {
    let Some(key) = key else {
        return file.to_string();
    };
    entries
        .iter()
        .rev()
        .find(|e| key == e.key || key.starts_with(&format!("{}.", e.key)))
        .map(|e| e.source.clone())
        .unwrap_or_else(|| file.to_string())
}

/// `spec` with `key.path=value` overrides applied, validated (for specs built in code, such
/// as the benchmark's reference sizes).
pub fn with_overrides(spec: Spec, overrides: &[String]) -> Result<Spec, UserError> {
    let layer = Layer {
        origin: OVERRIDE_ORIGIN,
        entries: parse_overrides(overrides)?,
    };
    let blame = |key: Option<&str>| source_of(OVERRIDE_ORIGIN, &layer.entries, key);
    let spec: Spec = Figment::from(Serialized::defaults(spec))
        .merge(&layer)
        .extract()
        .map_err(|e| describe(e, &blame))?;
    validate(&spec).map_err(|mut e| {
        e.origin = blame(e.key.as_deref());
        e
    })?;
    Ok(spec)
}

fn parse_overrides(overrides: &[String]) -> Result<Vec<Entry>, UserError> {
    overrides.iter().map(|raw| parse_override(raw)).collect()
}

/// One value of a layer above the file: the key it sets, its value, and where it came from
/// (`command-line override 'train.lr=3e-3'`, `environment variable RUNNER_TRAIN__LR`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: toml::Value,
    pub source: String,
}

/// Splits `key.path=value`, reads the value as TOML (a bare word becomes a string) and checks
/// that the key exists.
pub fn parse_override(raw: &str) -> Result<Entry, UserError> {
    // A storage URL with a password is refused, and never echoed with it.
    let source = format!(
        "{OVERRIDE_ORIGIN} '{}'",
        crate::sweep::storage::without_password(raw)
    );
    let Some((key, value)) = raw.split_once('=') else {
        return Err(UserError::new(
            source,
            None,
            "expected key.path=value, e.g. train.lr=3e-3",
        ));
    };
    entry(key.trim(), value, source)
}

fn entry(key: &str, value: &str, source: String) -> Result<Entry, UserError> {
    check_known_key(key).map_err(|msg| UserError::new(&source, Some(key), msg))?;
    Ok(Entry {
        key: key.to_string(),
        value: toml_value(value.trim()),
        source,
    })
}

/// A value as TOML (`3e-3`, `["()", "[]"]`, `"10min"`), or else the bare text as a string.
fn toml_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// The dotted key a variable `RUNNER_<SECTION>__<KEY>` sets, for the spec's own sections
/// only: other `RUNNER_*` variables (hosted CI sets `RUNNER_OS`, `RUNNER_TEMP`, ...) are
/// not ours and are left alone.
fn env_key(name: &str) -> Option<String> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let (section, key) = rest.split_once("__")?;
    let section = section.to_ascii_lowercase();
    SECTIONS
        .contains(&section.as_str())
        .then(|| format!("{section}.{}", key.to_ascii_lowercase()))
}

const SECTIONS: [&str; 6] = ["experiment", "data", "model", "train", "eval", "sweep"];

/// The `RUNNER_<SECTION>__<KEY>` variables, read like command-line values.
fn env_layer(vars: impl Iterator<Item = (String, String)>) -> Result<Layer, UserError> {
    let mut entries = Vec::new();
    for (name, value) in vars {
        if let Some(key) = env_key(&name) {
            entries.push(entry(&key, &value, format!("environment variable {name}"))?);
        }
    }
    // The environment has no order of its own: sort for reproducible precedence messages.
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Layer {
        origin: ENV_ORIGIN,
        entries,
    })
}

/// Every leaf key of a spec, dotted (`train.lr`), in file order.
pub fn known_keys() -> Vec<String> {
    let mut value = toml::Value::try_from(Spec::default()).expect("a Spec serialises");
    // The sweep section is left out of a default spec's TOML; its keys exist all the same.
    let sweep = toml::Value::try_from(super::SweepSpec::default()).expect("a SweepSpec serialises");
    // Likewise `model.lora`, which is off by default.
    let lora = toml::Value::try_from(super::LoraSpec::default()).expect("a LoraSpec serialises");
    if let toml::Value::Table(sections) = &mut value {
        sections.insert("sweep".into(), sweep);
        if let Some(toml::Value::Table(model)) = sections.get_mut("model") {
            model.insert("lora".into(), lora);
        }
    }
    let mut keys = Vec::new();
    if let toml::Value::Table(sections) = value {
        for (section, fields) in sections {
            if let toml::Value::Table(fields) = fields {
                for (field, v) in fields {
                    let key = format!("{section}.{field}");
                    // A settings table (`model.lora`) is set whole or key by key.
                    if let toml::Value::Table(inner) = &v {
                        keys.extend(inner.keys().map(|k| format!("{key}.{k}")));
                    }
                    keys.push(key);
                }
            }
        }
    }
    keys
}

fn check_known_key(key: &str) -> Result<(), String> {
    let keys = known_keys();
    if keys.iter().any(|k| k == key) {
        return Ok(());
    }
    Err(format!("unknown key{}", suggestion(key, &keys)))
}

/// "; did you mean 'train.lr'?" when a known key is close enough to be a typo.
fn suggestion<S: AsRef<str>>(word: &str, candidates: &[S]) -> String {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c.as_ref()), c.as_ref()))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("; did you mean '{c}'?"))
        .unwrap_or_default()
}

/// Turns a figment error into one line naming the source, the key and what is allowed.
fn describe(err: figment::Error, blame: &dyn Fn(Option<&str>) -> String) -> UserError {
    use figment::error::Kind;
    let mut path = err.path.clone();
    let message = match &err.kind {
        Kind::UnknownField(field, expected) => {
            // figment's path already ends with the unknown field.
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            let prefix = path[..path.len() - 1].join(".");
            let full: Vec<String> = expected.iter().map(|e| join_key(&prefix, e)).collect();
            let allowed = expected.join(", ");
            let dotted = join_key(&prefix, field);
            format!(
                "unknown key{}; allowed here: {allowed}",
                suggestion(&dotted, &full)
            )
        }
        Kind::UnknownVariant(actual, expected) => {
            format!("unknown value '{actual}'; allowed: {}", expected.join(", "))
        }
        Kind::InvalidType(actual, expected) => {
            format!("wrong type: found {actual}, expected {expected}")
        }
        Kind::InvalidValue(actual, expected) => {
            format!("invalid value: found {actual}, expected {expected}")
        }
        other => other.to_string(),
    };
    let key = path.join(".");
    let key = (!key.is_empty()).then_some(key.as_str());
    UserError::new(blame(key), key, message)
}

fn join_key(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Values set above the file (environment or command line), as a figment provider.
struct Layer {
    origin: &'static str,
    entries: Vec<Entry>,
}

impl Provider for &Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = toml::Table::new();
        for e in &self.entries {
            insert_path(&mut root, &e.key, e.value.clone());
        }
        let data = Serialized::defaults(root).data()?;
        Ok(data)
    }
}

fn insert_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's own error type
mod tests {
    use super::*;
    use crate::spec::DecayOver;
    use figment::Jail;

    fn load_in_jail(jail: &mut Jail, text: &str, overrides: &[&str]) -> Result<Spec, UserError> {
        jail.create_file("spec.toml", text).expect("jail file");
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        load("spec.toml", &overrides).map(|r| r.spec)
    }

    #[test]
    fn layers_defaults_file_env_and_overrides_in_order() {
        Jail::expect_with(|jail| {
            jail.set_env("RUNNER_TRAIN__BATCH_SIZE", "16");
            jail.set_env("RUNNER_TRAIN__LR", "0.5");
            let spec = load_in_jail(
                jail,
                "[train]\nlr = 0.1\nbatch_size = 8\n[model]\nd_hidden = 64\n",
                &[
                    "train.lr=3e-3",
                    "model.arch=lstm",
                    "data.pairs=[\"()\", \"[]\"]",
                ],
            )
            .expect("valid spec");
            assert_eq!(spec.experiment.name, "spec");
            assert_eq!(spec.model.d_hidden, 64);
            assert_eq!(spec.train.batch_size, 16);
            assert_eq!(spec.train.lr, 3e-3);
            assert_eq!(spec.model.arch, super::super::Arch::Lstm);
            assert_eq!(spec.data.pairs, vec!["()", "[]"]);
            assert_eq!(spec.data.max_len, 20, "untouched keys keep their defaults");
            Ok(())
        });
    }

    #[test]
    fn environment_reads_only_spec_sections_and_values_as_toml() {
        Jail::expect_with(|jail| {
            // Hosted CI sets these in every job; they are not ours.
            jail.set_env("RUNNER_TEMP", "/tmp");
            jail.set_env("RUNNER_OS", "Linux");
            jail.set_env("RUNNER_TOOL_CACHE", "/opt/hostedtoolcache");
            // The README's own example: a float written as TOML reads as one.
            jail.set_env("RUNNER_TRAIN__LR", "1e-3");
            jail.set_env("RUNNER_DATA__PAIRS", "[\"()\", \"[]\"]");
            let spec = load_in_jail(jail, "", &[]).expect("valid spec");
            assert_eq!(spec.train.lr, 1e-3);
            assert_eq!(spec.data.pairs, vec!["()", "[]"]);

            jail.set_env("RUNNER_TRAIN__LRR", "1");
            let err = load_in_jail(jail, "", &[]).unwrap_err();
            assert_eq!(err.origin, "environment variable RUNNER_TRAIN__LRR");
            assert!(err.message.contains("did you mean 'train.lr'"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("RUNNER_TRAIN__LR", "-1");
            let err = load_in_jail(jail, "", &[]).unwrap_err();
            assert_eq!(err.origin, "environment variable RUNNER_TRAIN__LR");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_in_file_is_named_with_a_suggestion() {
        Jail::expect_with(|jail| {
            let err = load_in_jail(jail, "[train]\nlearning_rate = 0.1\n", &[]).unwrap_err();
            assert_eq!(err.origin, "spec.toml");
            assert_eq!(err.key.as_deref(), Some("train.learning_rate"));
            let err = load_in_jail(jail, "[train]\nlrr = 0.1\n", &[]).unwrap_err();
            assert!(err.message.contains("did you mean 'train.lr'"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_and_bad_override_are_named() {
        Jail::expect_with(|jail| {
            let err = load_in_jail(jail, "[train]\nlr = \"fast\"\n", &[]).unwrap_err();
            assert_eq!(err.key.as_deref(), Some("train.lr"));
            assert!(err.message.contains("wrong type"), "{err}");
            let err = load_in_jail(jail, "", &["train.lr"]).unwrap_err();
            assert!(err.to_string().contains("expected key.path=value"), "{err}");
            let err = load_in_jail(jail, "", &["train.lrr=1"]).unwrap_err();
            assert!(err.to_string().contains("did you mean 'train.lr'"), "{err}");
            let err = load_in_jail(jail, "", &["train.lr=fast"]).unwrap_err();
            assert_eq!(err.origin, "command-line override 'train.lr=fast'");
            // A value that reads but is impossible is blamed on the layer that set it.
            let err = load_in_jail(jail, "[train]\nlr = 0.1\n", &["train.lr=-1"]).unwrap_err();
            assert_eq!(err.origin, "command-line override 'train.lr=-1'");
            assert_eq!(err.key.as_deref(), Some("train.lr"));
            let err = load_in_jail(jail, "[train]\nlr = -1.0\n", &[]).unwrap_err();
            assert_eq!(err.origin, "spec.toml");
            Ok(())
        });
    }

    #[test]
    fn durations_are_checked_when_read_and_named() {
        Jail::expect_with(|jail| {
            for (text, key) in [
                ("[train]\nbudget = \"soon\"\n", "train.budget"),
                ("[train]\nbudget = \"0s\"\n", "train.budget"),
                ("[train]\ndecay_over = \"soon\"\n", "train.decay_over"),
                ("[train]\ndecay_over = 0\n", "train.decay_over"),
                ("[train]\ndecay_over = -5\n", "train.decay_over"),
                (
                    "[train]\ndecay_over = 50\nwarmup_steps = 50\n",
                    "train.decay_over",
                ),
                (
                    "[train]\ndecay_over = \"30s\"\nmax_steps = 500\n",
                    "train.decay_over",
                ),
                ("[train]\neval_every = \"soon\"\n", "train.eval_every"),
            ] {
                let err = load_in_jail(jail, text, &[]).unwrap_err();
                assert_eq!(err.key.as_deref(), Some(key), "{text}: {err}");
            }
            let spec = load_in_jail(jail, "[train]\nbudget = \"90s\"\n", &["train.decay_over="])
                .expect("valid");
            assert_eq!(spec.budget().as_secs(), 90);
            assert_eq!(spec.train.decay_over, None);
            // A step count: read, allowed beside max_steps, and written back as a number.
            let text = "[train]\nmax_steps = 900\nwarmup_steps = 10\n";
            let spec = load_in_jail(jail, text, &["train.decay_over=600"]).expect("valid");
            assert_eq!(spec.train.decay_over, Some(DecayOver::Steps(600)));
            assert!(
                spec.to_toml().contains("decay_over = 600\n"),
                "{}",
                spec.to_toml()
            );
            Ok(())
        });
    }

    #[test]
    fn threads_auto_resolves_to_the_cores_and_is_written_as_a_number() {
        Jail::expect_with(|jail| {
            let cores = crate::limits::cores();
            let spec =
                load_in_jail(jail, "[experiment]\nthreads = \"auto\"\n", &[]).expect("valid");
            assert_eq!(spec.experiment.threads, cores);
            assert!(
                spec.to_toml().contains(&format!("threads = {cores}\n")),
                "{}",
                spec.to_toml()
            );
            let spec = load_in_jail(jail, "", &["experiment.threads=auto"]).expect("valid");
            assert_eq!(spec.experiment.threads, cores);
            for text in ["threads = \"many\"", "threads = -1", "threads = 1.5"] {
                let err = load_in_jail(jail, &format!("[experiment]\n{text}\n"), &[]).unwrap_err();
                assert_eq!(
                    err.key.as_deref(),
                    Some("experiment.threads"),
                    "{text}: {err}"
                );
            }
            Ok(())
        });
    }

    #[test]
    fn override_values_are_read_as_toml_or_bare_strings() {
        let value = |raw: &str| parse_override(raw).unwrap().value;
        assert_eq!(
            value("train.budget=\"10min\""),
            toml::Value::String("10min".into())
        );
        assert_eq!(value("model.arch=lstm"), toml::Value::String("lstm".into()));
        assert_eq!(value("train.max_steps=300"), toml::Value::Integer(300));
    }

    #[test]
    fn known_keys_cover_every_section() {
        let keys = known_keys();
        for key in [
            "experiment.seed",
            "data.pairs",
            "model.arch",
            "train.lr",
            "eval.samples",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
    }
}

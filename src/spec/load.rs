//! Layering and error reporting: defaults < spec file < `RUNNER_*` environment < overrides.

use super::{validate, Spec, SpecError};
use figment::providers::{Env, Format, Serialized, Toml};
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
}

const ENV_PREFIX: &str = "RUNNER_";
const OVERRIDE_ORIGIN: &str = "command-line override";

/// Finds the spec file: a path as given, or a bare name such as `gru_1min` looked up as
/// `configs/gru_1min.toml`.
pub fn resolve_path(arg: &str) -> Result<PathBuf, SpecError> {
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
    Err(SpecError::new(
        arg,
        None,
        format!("spec file not found{hint}"),
    ))
}

/// Loads, layers and validates a spec. Nothing is written.
pub fn load(arg: &str, overrides: &[String]) -> Result<Resolved, SpecError> {
    let path = resolve_path(arg)?;
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| SpecError::new(&origin, None, format!("cannot read: {e}")))?;
    // Syntax errors are reported by the toml crate with line and column.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(SpecError::new(
            &origin,
            None,
            format!("not valid TOML: {e}"),
        ));
    }
    let parsed = parse_overrides(overrides)?;
    let figment = Figment::from(Serialized::defaults(Spec::default()))
        .merge(Toml::string(&text))
        .merge(Env::prefixed(ENV_PREFIX).split("__"))
        .merge(Overrides(parsed));
    let mut spec: Spec = figment.extract().map_err(|e| describe(e, &origin))?;
    if spec.experiment.name.is_empty() {
        spec.experiment.name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "experiment".into());
    }
    validate(&spec).map_err(|mut e| {
        if e.origin.is_empty() {
            e.origin = origin.clone();
        }
        e
    })?;
    Ok(Resolved {
        spec,
        path,
        overrides: overrides.to_vec(),
    })
}

/// `spec` with `key.path=value` overrides applied, validated (for specs built in code, such
/// as the benchmark's reference sizes).
pub fn with_overrides(spec: Spec, overrides: &[String]) -> Result<Spec, SpecError> {
    let figment =
        Figment::from(Serialized::defaults(spec)).merge(Overrides(parse_overrides(overrides)?));
    let spec: Spec = figment
        .extract()
        .map_err(|e| describe(e, OVERRIDE_ORIGIN))?;
    validate(&spec)?;
    Ok(spec)
}

fn parse_overrides(overrides: &[String]) -> Result<Vec<(String, toml::Value)>, SpecError> {
    overrides.iter().map(|raw| parse_override(raw)).collect()
}

/// Splits `key.path=value`, reads the value as TOML (a bare word becomes a string) and checks
/// that the key exists.
pub fn parse_override(raw: &str) -> Result<(String, toml::Value), SpecError> {
    let origin = format!("{OVERRIDE_ORIGIN} '{raw}'");
    let Some((key, value)) = raw.split_once('=') else {
        return Err(SpecError::new(
            origin,
            None,
            "expected key.path=value, e.g. train.lr=3e-3",
        ));
    };
    let key = key.trim();
    check_known_key(key).map_err(|msg| SpecError::new(&origin, Some(key), msg))?;
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key.to_string(), parsed))
}

/// Every leaf key of a spec, dotted (`train.lr`), in file order.
pub fn known_keys() -> Vec<String> {
    let mut value = toml::Value::try_from(Spec::default()).expect("a Spec serialises");
    // The sweep section is left out of a default spec's TOML; its keys exist all the same.
    let sweep = toml::Value::try_from(super::SweepSpec::default()).expect("a SweepSpec serialises");
    if let toml::Value::Table(sections) = &mut value {
        sections.insert("sweep".into(), sweep);
    }
    let mut keys = Vec::new();
    if let toml::Value::Table(sections) = value {
        for (section, fields) in sections {
            if let toml::Value::Table(fields) = fields {
                keys.extend(fields.keys().map(|f| format!("{section}.{f}")));
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
fn describe(err: figment::Error, file: &str) -> SpecError {
    use figment::error::Kind;
    let origin = match err.metadata.as_ref().map(|m| m.name.to_string()) {
        Some(name) if name.contains("environment") => {
            format!(
                "environment variable {ENV_PREFIX}{}",
                err.path.join("__").to_uppercase()
            )
        }
        Some(name) if name == OVERRIDE_ORIGIN => OVERRIDE_ORIGIN.to_string(),
        _ => file.to_string(),
    };
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
        Kind::Message(m) if m.contains("did not match any variant") => {
            "expected a step count (e.g. 200) or a duration string (e.g. \"10s\")".to_string()
        }
        other => other.to_string(),
    };
    let key = path.join(".");
    SpecError::new(origin, (!key.is_empty()).then_some(key.as_str()), message)
}

fn join_key(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Command-line overrides as a figment provider, so that errors name their origin.
struct Overrides(Vec<(String, toml::Value)>);

impl Provider for Overrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(OVERRIDE_ORIGIN)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = toml::Table::new();
        for (key, value) in &self.0 {
            insert_path(&mut root, key, value.clone());
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

/// `runner configs`: each `*.toml` in `dir` by name, with the first line of its leading
/// comment, sorted by name.
pub fn describe_configs(dir: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let mut rows = Vec::new();
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading '{}'", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading '{}'", path.display()))?;
        let description = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix('#'))
            .map(str::trim)
            .unwrap_or("")
            .to_string();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        rows.push((name, description));
    }
    rows.sort();
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    Ok(rows
        .iter()
        .map(|(name, d)| format!("{name:<width$}  {d}\n"))
        .collect())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's own error type
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(jail: &mut Jail, text: &str, overrides: &[&str]) -> Result<Spec, SpecError> {
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
            assert_eq!(err.origin, OVERRIDE_ORIGIN);
            Ok(())
        });
    }

    #[test]
    fn override_values_are_read_as_toml_or_bare_strings() {
        let (_, v) = parse_override("train.budget=\"10min\"").unwrap();
        assert_eq!(v, toml::Value::String("10min".into()));
        let (_, v) = parse_override("model.arch=lstm").unwrap();
        assert_eq!(v, toml::Value::String("lstm".into()));
        let (_, v) = parse_override("train.max_steps=300").unwrap();
        assert_eq!(v, toml::Value::Integer(300));
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

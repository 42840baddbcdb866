//! `runner configs`: the shipped specs of a directory, one line each.

use std::path::Path;

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

//! `runner study copy FROM TO`: a whole study from one storage into another (a study
//! directory's SQLite file and a PostgreSQL database, either way), so that a study begun
//! on a laptop can be spread over machines, or brought home to read offline.

use super::storage::{study_name, Location, TrialState};
use crate::error::UserError;
use anyhow::Result;
use std::path::Path;

/// Copies the study and returns a one-line account of what was copied.
pub fn copy(from: &str, to: &str, study: Option<&str>) -> Result<String> {
    let name = match study {
        Some(n) => n.to_string(),
        None => [from, to]
            .into_iter()
            .find(|end| !is_url(end))
            .map(|dir| study_name(Path::new(dir)))
            .transpose()?
            .ok_or_else(|| {
                UserError::input(
                    "runner study copy",
                    "both ends are PostgreSQL URLs: name the study with --study",
                )
            })?,
    };
    let source = location(from, &name)?;
    let target = location(to, &name)?;
    if let Location::Sqlite(path) = &source {
        if !path.is_file() {
            return Err(UserError::input(from, format!("holds no study (no {source})")).into());
        }
    }
    let db = source.open_read_only()?;
    let info = db
        .study()
        .map_err(|e| UserError::input(source.to_string(), format!("{e:#}")))?;
    let mut trials = Vec::new();
    for mut t in db.trials()? {
        // A trial running at the source is not running at the target: re-run it there.
        if t.state == TrialState::Running {
            t.state = TrialState::Interrupted;
        }
        let spec = db.trial_spec(t.number)?;
        trials.push((t, spec));
    }
    if let Location::Sqlite(path) = &target {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| UserError::input(dir.display().to_string(), e.to_string()))?;
        }
    }
    let info = super::storage::StudyInfo { name, ..info };
    target
        .open()?
        .import(&info, &trials)
        .map_err(|e| UserError::input(target.to_string(), format!("{e:#}")))?;
    Ok(format!(
        "copied study '{}' ({} trials) from {source} to {target}",
        info.name,
        trials.len()
    ))
}

fn is_url(end: &str) -> bool {
    end.contains("://")
}

fn location(end: &str, study: &str) -> Result<Location> {
    if is_url(end) {
        Location::postgres(end, study)
            .map_err(|e| UserError::input(super::storage::without_password(end), e).into())
    } else {
        Ok(Location::in_study_dir(Path::new(end)))
    }
}

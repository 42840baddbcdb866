//! Budgets and intervals written as "90s", "10min", "1hour", "6hours", "2days", "1h30min".

use std::time::Duration;

/// Parses a human duration; the error says what is allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let parsed = humantime::parse_duration(trimmed).map_err(|e| {
        format!(
            "cannot read '{text}' as a duration ({e}); write e.g. \"90s\", \"10min\", \"1hour\", \
             \"6hours\", \"2days\" or \"1h30min\""
        )
    })?;
    if parsed.is_zero() {
        return Err(format!("'{text}' is zero; a duration must be positive"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_budget_the_configs_use() {
        let cases = [
            ("90s", 90),
            ("1min", 60),
            ("10min", 600),
            ("1hour", 3600),
            ("6hours", 6 * 3600),
            ("1day", 86_400),
            ("2days", 2 * 86_400),
            ("1h30min", 5400),
            (" 2m 5s ", 125),
        ];
        for (text, secs) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_garbage_and_zero() {
        for bad in ["", "ten minutes", "5", "-1min", "0s", "1 fortnight"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("duration") || err.contains("zero"),
                "{bad}: {err}"
            );
        }
    }
}

//! Budgets and intervals written as "90s", "10min", "1hour", "6hours", "2days", "1h30min",
//! parsed once when the spec is read.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// A positive duration that keeps the words it was written with, so that a resolved spec
/// serialises back to the same TOML (`budget = "10min"`, not a number of seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDuration {
    text: String,
    value: Duration,
}

impl HumanDuration {
    /// Parses a human duration; the error says what is allowed.
    pub fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text).map(|value| Self {
            text: text.trim().to_string(),
            value,
        })
    }

    pub fn get(&self) -> Duration {
        self.value
    }

    pub fn as_secs_f64(&self) -> f64 {
        self.value.as_secs_f64()
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

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

    #[test]
    fn serialises_back_to_the_words_it_was_read_from() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            budget: HumanDuration,
        }
        let t: T = toml::from_str("budget = \"1h30min\"\n").unwrap();
        assert_eq!(t.budget.get(), Duration::from_secs(5400));
        let text = toml::to_string(&t).unwrap();
        assert_eq!(text, "budget = \"1h30min\"\n");
        assert!(toml::from_str::<T>("budget = \"soon\"\n").is_err());
    }
}

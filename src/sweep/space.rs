//! The search space: `[sweep.space]` entries checked against the base spec, sampled at
//! random, enumerated as a grid, and turned back into `key=value` overrides.

use crate::error::UserError;
use crate::spec::{ParamSpec, SweepSpec};
use rand::Rng;
use std::collections::BTreeMap;

/// One trial's parameters, keyed by spec key path.
pub type Params = BTreeMap<String, toml::Value>;

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Int {
        lo: i64,
        hi: i64,
        log: bool,
        steps: usize,
    },
    Float {
        lo: f64,
        hi: f64,
        log: bool,
        steps: usize,
    },
    Choice(Vec<toml::Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub params: Vec<(String, Param)>,
}

/// Keys a trial may not set: the study decides them.
const RESERVED: [&str; 3] = ["experiment.name", "experiment.out_dir", "experiment.seed"];

impl Space {
    /// Reads `[sweep.space]`; each key must be a spec key and each range well formed.
    pub fn from_spec(sweep: &SweepSpec, origin: &str) -> Result<Self, UserError> {
        let known = crate::spec::known_keys();
        let mut params = Vec::new();
        for (key, spec) in &sweep.space {
            let full = format!("sweep.space.\"{key}\"");
            let fail = |message: String| UserError::new(origin, Some(&full), message);
            if !known.iter().any(|k| k == key) || key.starts_with("sweep.") {
                return Err(fail(format!(
                    "'{key}' is not a spec key that a trial can set"
                )));
            }
            if RESERVED.contains(&key.as_str()) {
                return Err(fail(format!("'{key}' is set by the study for each trial")));
            }
            params.push((key.clone(), parse_param(spec).map_err(fail)?));
        }
        if params.is_empty() {
            return Err(UserError::new(
                origin,
                Some("sweep.space"),
                "is empty: add entries such as \"train.lr\" = { float = [1e-4, 1e-2], log = true }",
            ));
        }
        Ok(Self { params })
    }

    /// Values a sweep would reach at the edges, to validate against the base spec.
    pub fn extremes(&self) -> Vec<(String, toml::Value)> {
        let mut out = Vec::new();
        for (key, p) in &self.params {
            let values = match p {
                Param::Int { lo, hi, .. } => {
                    vec![toml::Value::Integer(*lo), toml::Value::Integer(*hi)]
                }
                Param::Float { lo, hi, .. } => {
                    vec![toml::Value::Float(*lo), toml::Value::Float(*hi)]
                }
                Param::Choice(cs) => cs.clone(),
            };
            out.extend(values.into_iter().map(|v| (key.clone(), v)));
        }
        out
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> Params {
        self.params
            .iter()
            .map(|(k, p)| (k.clone(), sample_one(p, rng)))
            .collect()
    }

    /// Every grid point, in a fixed order.
    pub fn grid(&self) -> Vec<Params> {
        let mut points = vec![Params::new()];
        for (key, p) in &self.params {
            let values = grid_values(p);
            points = points
                .into_iter()
                .flat_map(|point| {
                    values.iter().map(move |v| {
                        let mut next = point.clone();
                        next.insert(key.clone(), v.clone());
                        next
                    })
                })
                .collect();
        }
        points
    }

    /// A stable text of the space, stored with the study to detect a changed space.
    pub fn fingerprint(&self) -> String {
        format!("{:?}", self.params)
    }
}

fn parse_param(spec: &ParamSpec) -> Result<Param, String> {
    let kinds = [
        spec.int.is_some(),
        spec.float.is_some(),
        spec.choice.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(
            "write exactly one of int = [lo, hi], float = [lo, hi] or choice = [...]".into(),
        );
    }
    let steps = spec.steps.unwrap_or(3).max(1);
    if let Some([lo, hi]) = spec.int {
        check_range(lo as f64, hi as f64, spec.log)?;
        return Ok(Param::Int {
            lo,
            hi,
            log: spec.log,
            steps,
        });
    }
    if let Some([lo, hi]) = spec.float {
        check_range(lo, hi, spec.log)?;
        return Ok(Param::Float {
            lo,
            hi,
            log: spec.log,
            steps,
        });
    }
    let choices = spec.choice.clone().unwrap_or_default();
    if choices.is_empty() {
        return Err("choice needs at least one value".into());
    }
    if spec.log {
        return Err("log applies to int and float ranges, not to choice".into());
    }
    Ok(Param::Choice(choices))
}

fn check_range(lo: f64, hi: f64, log: bool) -> Result<(), String> {
    if !(lo.is_finite() && hi.is_finite()) || lo > hi {
        return Err(format!(
            "[{lo}, {hi}] is not a range: the first bound must not exceed the second"
        ));
    }
    if log && lo <= 0.0 {
        return Err(format!("a log range must be positive; [{lo}, {hi}] is not"));
    }
    Ok(())
}

/// A value in [lo, hi] from a point u in [0, 1] of the (log or linear) range.
pub fn from_unit(p: &Param, u: f64) -> toml::Value {
    let u = u.clamp(0.0, 1.0);
    match *p {
        // Clamped: exp(ln(x)) may land a rounding error outside the range.
        Param::Float { lo, hi, log, .. } => toml::Value::Float(lerp(lo, hi, log, u).clamp(lo, hi)),
        Param::Int { lo, hi, log, .. } => {
            // Widen by one so that the top integer gets its share.
            let x = lerp(lo as f64, hi as f64 + 1.0, log, u).floor() as i64;
            toml::Value::Integer(x.clamp(lo, hi))
        }
        Param::Choice(ref cs) => {
            let i = ((u * cs.len() as f64) as usize).min(cs.len() - 1);
            cs[i].clone()
        }
    }
}

/// Where a value lies in [0, 1] of its range (numeric params only).
pub fn to_unit(p: &Param, v: &toml::Value) -> f64 {
    let x = match v {
        toml::Value::Integer(i) => *i as f64 + 0.5,
        toml::Value::Float(f) => *f,
        _ => return 0.5,
    };
    match *p {
        Param::Float { lo, hi, log, .. } => unlerp(lo, hi, log, x),
        Param::Int { lo, hi, log, .. } => unlerp(lo as f64, hi as f64 + 1.0, log, x),
        Param::Choice(_) => 0.5,
    }
}

fn lerp(lo: f64, hi: f64, log: bool, u: f64) -> f64 {
    if log {
        (lo.ln() + u * (hi.ln() - lo.ln())).exp()
    } else {
        lo + u * (hi - lo)
    }
}

fn unlerp(lo: f64, hi: f64, log: bool, x: f64) -> f64 {
    let (a, b, x) = if log {
        (lo.ln(), hi.ln(), x.max(1e-300).ln())
    } else {
        (lo, hi, x)
    };
    if b == a {
        0.5
    } else {
        ((x - a) / (b - a)).clamp(0.0, 1.0)
    }
}

fn sample_one<R: Rng>(p: &Param, rng: &mut R) -> toml::Value {
    from_unit(p, rng.gen::<f64>())
}

fn grid_values(p: &Param) -> Vec<toml::Value> {
    match p {
        Param::Choice(cs) => cs.clone(),
        Param::Int { lo, hi, log, steps } => {
            if hi - lo < 10 {
                return (*lo..=*hi).map(toml::Value::Integer).collect();
            }
            let mut values: Vec<i64> = (0..*steps)
                .map(|i| {
                    let u = if *steps == 1 {
                        0.5
                    } else {
                        i as f64 / (*steps - 1) as f64
                    };
                    lerp(*lo as f64, *hi as f64, *log, u).round() as i64
                })
                .collect();
            values.dedup();
            values.into_iter().map(toml::Value::Integer).collect()
        }
        Param::Float { lo, hi, log, steps } => (0..*steps)
            .map(|i| {
                let u = if *steps == 1 {
                    0.5
                } else {
                    i as f64 / (*steps - 1) as f64
                };
                toml::Value::Float(lerp(*lo, *hi, *log, u))
            })
            .collect(),
    }
}

/// `key=value` overrides for `spec::load`.
pub fn overrides(params: &Params) -> Vec<String> {
    params.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn space(entries: &[(&str, ParamSpec)]) -> Result<Space, UserError> {
        let mut sweep = SweepSpec::default();
        for (k, p) in entries {
            sweep.space.insert(k.to_string(), p.clone());
        }
        Space::from_spec(&sweep, "s.toml")
    }

    fn float(lo: f64, hi: f64, log: bool) -> ParamSpec {
        ParamSpec {
            float: Some([lo, hi]),
            log,
            ..Default::default()
        }
    }

    fn int(lo: i64, hi: i64, log: bool) -> ParamSpec {
        ParamSpec {
            int: Some([lo, hi]),
            log,
            ..Default::default()
        }
    }

    #[test]
    fn samples_stay_in_range_on_log_and_linear_scales() {
        let s = space(&[
            ("train.lr", float(1e-4, 1e-2, true)),
            ("model.d_hidden", int(32, 512, true)),
        ])
        .unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut small_lr = 0;
        for _ in 0..2000 {
            let p = s.sample(&mut rng);
            let lr = p["train.lr"].as_float().unwrap();
            let h = p["model.d_hidden"].as_integer().unwrap();
            assert!((1e-4..=1e-2).contains(&lr) && (32..=512).contains(&h));
            small_lr += usize::from(lr < 1e-3);
        }
        // Log scale: half the mass below the geometric midpoint 1e-3.
        assert!((800..1200).contains(&small_lr), "{small_lr}");
    }

    #[test]
    fn grid_is_the_product_of_each_axis() {
        let choice = ParamSpec {
            choice: Some(vec![32.into(), 64.into()]),
            ..Default::default()
        };
        let s = space(&[
            ("train.batch_size", choice),
            ("model.n_layers", int(1, 3, false)),
            ("train.lr", float(1e-3, 1e-1, true)),
        ])
        .unwrap();
        let grid = s.grid();
        assert_eq!(grid.len(), 2 * 3 * 3);
        let distinct: std::collections::HashSet<String> =
            grid.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(distinct.len(), grid.len());
    }

    #[test]
    fn bad_entries_are_refused_by_key() {
        let e = space(&[("model.d_hiden", int(1, 2, false))]).unwrap_err();
        assert!(e.message.contains("not a spec key"), "{e}");
        let e = space(&[("train.lr", ParamSpec::default())]).unwrap_err();
        assert!(e.message.contains("exactly one"), "{e}");
        let e = space(&[("train.lr", float(0.0, 1.0, true))]).unwrap_err();
        assert!(e.message.contains("positive"), "{e}");
        let e = space(&[("train.lr", float(1.0, 0.1, false))]).unwrap_err();
        assert!(e.message.contains("not a range"), "{e}");
        let e = space(&[("experiment.seed", int(1, 2, false))]).unwrap_err();
        assert!(e.message.contains("set by the study"), "{e}");
        assert!(space(&[]).is_err());
    }
}

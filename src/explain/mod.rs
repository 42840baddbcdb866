//! `runner explain RUN PREFIX`: what a trained bracket model does inside on one prefix, and
//! on fresh examples of its distribution. Writes into RUN/explain/ (replacing what an
//! earlier call wrote there): one heatmap per attention layer and head (queries x keys,
//! answer positions marked `*`), the hidden state or residual stream of each layer over the
//! positions, a recurrent layer's gate, the probability of every closer at each answer
//! step, a linear probe of the nesting depth (R² on held-out fresh positions), and
//! `summary.md` / `summary.json` with which head attends to the matching opener.
//! Reads the run; writes nothing else.

mod heatmap;
pub mod probe;

use crate::data::batcher::{make_batch, Batch, Layout};
use crate::data::task::{closing, Example};
use crate::data::{dataset, Vocab};
use crate::error::UserError;
use crate::model::trace::{AttentionMap, LayerValues, Side, Trace};
use crate::model::Model;
use crate::spec::Spec;
use crate::train::checkpoint::{self, Slot};
use anyhow::Result;
use burn::prelude::Device;
use heatmap::{Heatmap, Scatter};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `runner explain` found; also `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainReport {
    pub prefix: String,
    pub expected: String,
    /// Greedy teacher-forced answer: the most likely token at each answer position.
    pub predicted: String,
    pub answer_steps: Vec<AnswerStep>,
    /// Each attention head's hit rate on the matching opener over the fresh examples.
    pub heads: Vec<HeadScore>,
    /// The head that finds the matching opener most often, if any does at least half the time.
    pub matching_head: Option<HeadScore>,
    pub probe: ProbeReport,
    pub figures: Vec<PathBuf>,
}

/// One answer position of the explained prefix.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerStep {
    pub expected: String,
    pub predicted: String,
    /// Cross-entropy of the expected token.
    pub loss: f64,
    /// Probability of each closer and of `,`, in `candidates` order.
    pub probabilities: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeadScore {
    pub layer: String,
    pub head: usize,
    /// Share of closer steps whose largest weight is on the matching opener.
    pub hit_rate: f64,
    /// Mean weight on the matching opener.
    pub mean_weight: f64,
    pub steps: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The representation probed.
    pub layer: String,
    pub r_squared: f64,
    pub fit_positions: usize,
    pub test_positions: usize,
}

/// Fresh examples for the head scores and the probe: half fit the probe, half score it.
pub const DEFAULT_SAMPLES: usize = 200;

pub fn explain(
    run_dir: &Path,
    prefix: &str,
    slot: Slot,
    samples: usize,
    out: Option<PathBuf>,
) -> Result<ExplainReport> {
    let (loaded, device) = checkpoint::load_run(run_dir, slot)?;
    let spec = &loaded.spec;
    crate::text::refuse(run_dir, spec, "runner explain")?;
    if spec.data.task == crate::spec::Task::Lm {
        return Err(UserError::input(
            run_dir.display().to_string(),
            "is a language model (data.task = \"lm\"): explain reads a model of the closing \
             task at its answer positions",
        )
        .into());
    }
    if samples < 4 {
        return Err(
            UserError::input("--samples", "at least 4: half fit the probe, half score it").into(),
        );
    }
    crate::limits::check_examples(spec, samples, "--samples")?;
    let vocab = dataset::vocab(spec);
    let example = example_of(prefix, &vocab)?;
    crate::app::check_positions(
        spec,
        std::slice::from_ref(&example),
        spec.max_answer_len(),
        &vocab,
    )?;
    let dir = out.unwrap_or_else(|| run_dir.join("explain"));
    std::fs::create_dir_all(&dir)?;
    let layout = crate::model::layout(spec, &vocab);
    let model = &loaded.model;
    let batch = make_batch(&[&example], &vocab, layout, &device, None);
    let trace = model.trace(&batch).expect("bracket models have traces");
    let view = View::new(&batch, &vocab);
    let mut figures = Vec::new();
    figures.extend(draw_attention(&trace, &view, &dir)?);
    figures.extend(draw_states(&trace, &view, &dir)?);
    let (answer_steps, predicted) = answer_steps(&trace, &view, &vocab);
    figures.extend(draw_closers(&answer_steps, &dir)?);
    let fresh = dataset::fresh(spec, &vocab, samples, dataset::fresh_seed(spec));
    let fresh: Vec<Example> = fresh
        .into_iter()
        .filter(|e| crate::model::fits(spec, e, spec.max_answer_len()))
        .collect();
    // Each fresh example is traced once; the head scores and the probe both read it.
    let traced = trace_all(model, &fresh, &vocab, layout, &device);
    let heads = head_scores(&traced, &vocab, layout);
    let (probe, points) = depth_probe(&traced, &vocab, layout);
    figures.extend(
        Scatter {
            title: &format!(
                "depth probe on {} (R² {:.3}, held-out positions)",
                probe.layer, probe.r_squared
            ),
            points: &points,
        }
        .write(&dir.join("probe"))?,
    );
    let matching_head = heads
        .iter()
        .filter(|h| h.hit_rate >= 0.5)
        .max_by(|a, b| a.hit_rate.total_cmp(&b.hit_rate))
        .cloned();
    let report = ExplainReport {
        prefix: prefix.to_string(),
        expected: vocab.decode(&view.answer),
        predicted,
        answer_steps,
        heads,
        matching_head,
        probe,
        figures,
    };
    crate::artifacts::write_json(&dir.join("summary.json"), &report)?;
    crate::artifacts::write_atomic(&dir.join("summary.md"), report.markdown(spec).as_bytes())?;
    Ok(report)
}

/// The prefix as an example with its closing; a prefix that is not one the task can close
/// is refused, naming it.
fn example_of(prefix: &str, vocab: &Vocab) -> Result<Example, UserError> {
    let origin = format!("prefix '{prefix}'");
    let ids = vocab
        .encode(prefix)
        .map_err(|e| UserError::input(&origin, e.to_string()))?;
    let answer = closing(vocab, &ids).map_err(|e| UserError::input(&origin, e.to_string()))?;
    if answer.is_empty() {
        return Err(UserError::input(
            &origin,
            "closes every bracket it opens: give a prefix with at least one left open",
        ));
    }
    // The record adds the final `,`.
    Ok(Example {
        prefix: ids,
        answer,
    })
}

/// Labels of the batch's positions, and where the answer is read.
struct View {
    tokens: Vec<String>,
    source: Vec<String>,
    /// Positions (on the tokens side) whose output is an answer token, in answer order.
    answer_at: Vec<usize>,
    /// The answer's tokens.
    answer: Vec<u32>,
}

impl View {
    fn new(batch: &Batch, vocab: &Vocab) -> Self {
        let label = |id: i64| match id as u32 {
            id if id == crate::model::mask_id(vocab) => "[mask]".to_string(),
            id => vocab.token(id),
        };
        let ids = |t: &burn::prelude::Tensor<2, burn::prelude::Int>| -> Vec<i64> {
            t.to_data().iter::<i64>().collect()
        };
        let tokens: Vec<String> = ids(&batch.tokens).into_iter().map(label).collect();
        let source = batch
            .source
            .as_ref()
            .map(|s| ids(s).into_iter().map(label).collect())
            .unwrap_or_default();
        let answer_at: Vec<usize> = (0..batch.len)
            .filter(|&t| batch.answer_ids[t] != 0)
            .collect();
        let answer = answer_at
            .iter()
            .map(|&t| batch.answer_ids[t] as u32)
            .collect();
        Self {
            tokens,
            source,
            answer_at,
            answer,
        }
    }

    fn labels(&self, side: Side) -> &[String] {
        match side {
            Side::Tokens => &self.tokens,
            Side::Source => &self.source,
        }
    }

    /// Query labels, answer positions marked.
    fn marked(&self, side: Side) -> Vec<String> {
        let mut labels = self.labels(side).to_vec();
        if side == Side::Tokens {
            for &t in &self.answer_at {
                labels[t] = format!("{} *", labels[t]);
            }
        }
        labels
    }
}

fn draw_attention(trace: &Trace, view: &View, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for (i, map) in trace.attention.iter().enumerate() {
        for (h, weights) in map.weights.iter().enumerate() {
            let title = format!("{}, head {h}", map.name);
            files.extend(
                Heatmap {
                    title: &title,
                    x_desc: "key (attended to)",
                    y_desc: "query (* = answer position)",
                    rows: &view.marked(map.queries),
                    cols: view.labels(map.keys),
                    values: weights,
                    range: Some((0.0, 1.0)),
                }
                .write(&dir.join(format!("attention_{i}_head{h}")))?,
            );
        }
    }
    Ok(files)
}

/// Hidden states / residual streams and gates: units down, positions across.
fn draw_states<'a>(trace: &'a Trace, view: &View, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let numbered = |layers: &'a [LayerValues], kind: &'static str| {
        layers.iter().enumerate().map(move |(i, l)| (i, l, kind))
    };
    let all = numbered(&trace.states, "state").chain(numbered(&trace.gates, "gate"));
    for (i, layer, kind) in all {
        let units = layer.values.first().map_or(0, Vec::len);
        let shown = most_varying(&layer.values, SHOWN_UNITS);
        let transposed: Vec<Vec<f32>> = shown
            .iter()
            .map(|&u| layer.values.iter().map(|p| p[u]).collect())
            .collect();
        let rows: Vec<String> = shown
            .iter()
            .map(|&u| {
                layer
                    .units
                    .get(u)
                    .cloned()
                    .unwrap_or_else(|| format!("unit {u}"))
            })
            .collect();
        let range = (kind == "gate").then_some((0.0, 1.0));
        let title = if shown.len() < units {
            format!(
                "{} ({} of {units} units that vary most)",
                layer.name,
                shown.len()
            )
        } else {
            layer.name.clone()
        };
        files.extend(
            Heatmap {
                title: &title,
                x_desc: "position",
                y_desc: "unit",
                rows: &rows,
                cols: view.labels(layer.side),
                values: &transposed,
                range,
            }
            .write(&dir.join(format!("{kind}_{i}")))?,
        );
    }
    Ok(files)
}

/// Units drawn per layer: more would not be readable at a glance.
const SHOWN_UNITS: usize = 32;

/// The `n` units whose values vary most over the positions, in unit order.
fn most_varying(values: &[Vec<f32>], n: usize) -> Vec<usize> {
    let units = values.first().map_or(0, Vec::len);
    let variance = |u: usize| {
        let mean = values.iter().map(|p| p[u] as f64).sum::<f64>() / values.len() as f64;
        values
            .iter()
            .map(|p| (p[u] as f64 - mean).powi(2))
            .sum::<f64>()
    };
    let mut order: Vec<usize> = (0..units).collect();
    order.sort_by(|&a, &b| variance(b).total_cmp(&variance(a)));
    order.truncate(n);
    order.sort_unstable();
    order
}

/// Softmax of one row of logits.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let top = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - top).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|v| v / total).collect()
}

/// The closers and `,`: the tokens an answer is written in.
fn candidates(vocab: &Vocab) -> Vec<u32> {
    (0..vocab.n_pairs())
        .map(|p| vocab.closer(p))
        .chain([vocab.end()])
        .collect()
}

fn answer_steps(trace: &Trace, view: &View, vocab: &Vocab) -> (Vec<AnswerStep>, String) {
    let candidates = candidates(vocab);
    let mut predicted = String::new();
    let steps = view
        .answer_at
        .iter()
        .zip(&view.answer)
        .map(|(&t, &want)| {
            let p = softmax(&trace.logits[t]);
            let best = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0) as u32;
            predicted.push_str(&vocab.token(best));
            AnswerStep {
                expected: vocab.token(want),
                predicted: vocab.token(best),
                loss: -p[want as usize].max(1e-30).ln(),
                probabilities: candidates
                    .iter()
                    .map(|&c| (vocab.token(c), p[c as usize]))
                    .collect(),
            }
        })
        .collect();
    (steps, predicted)
}

fn draw_closers(steps: &[AnswerStep], dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(first) = steps.first() else {
        return Ok(Vec::new());
    };
    let rows: Vec<String> = first.probabilities.iter().map(|(t, _)| t.clone()).collect();
    let cols: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(k, s)| format!("{} {}", k + 1, s.expected))
        .collect();
    let values: Vec<Vec<f32>> = (0..rows.len())
        .map(|r| steps.iter().map(|s| s.probabilities[r].1 as f32).collect())
        .collect();
    Heatmap {
        title: "probability of each closer at each answer step",
        x_desc: "answer step (expected token)",
        y_desc: "token",
        rows: &rows,
        cols: &cols,
        values: &values,
        range: Some((0.0, 1.0)),
    }
    .write(&dir.join("closers"))
}

/// Record position of the opener each closer of `e`'s answer matches (innermost first).
fn matching_openers(e: &Example, vocab: &Vocab) -> Vec<usize> {
    let mut stack = Vec::new();
    for (i, &id) in e.prefix.iter().enumerate() {
        if vocab.is_opener(id) {
            stack.push(i);
        } else {
            stack.pop();
        }
    }
    // `input` comes first on the side the prefix is read from.
    stack.iter().rev().map(|i| i + 1).collect()
}

/// The attention maps whose queries include the answer positions and whose keys hold the
/// prefix: every map of gpt and ber, the decoder's cross-attention of tra.
fn reads_prefix(map: &AttentionMap, layout: Layout) -> bool {
    match layout {
        Layout::EncoderDecoder => map.queries == Side::Tokens && map.keys == Side::Source,
        _ => map.queries == Side::Tokens && map.keys == Side::Tokens,
    }
}

/// An example with its trace and the positions whose output is an answer token.
struct Traced<'a> {
    example: &'a Example,
    answer_at: Vec<usize>,
    trace: Trace,
}

fn trace_all<'a>(
    model: &Model,
    examples: &'a [Example],
    vocab: &Vocab,
    layout: Layout,
    device: &Device,
) -> Vec<Traced<'a>> {
    examples
        .iter()
        .filter_map(|e| {
            let batch = make_batch(&[e], vocab, layout, device, None);
            let answer_at = (0..batch.len)
                .filter(|&t| batch.answer_ids[t] != 0)
                .collect();
            Some(Traced {
                example: e,
                answer_at,
                trace: model.trace(&batch)?,
            })
        })
        .collect()
}

fn head_scores(traced: &[Traced], vocab: &Vocab, layout: Layout) -> Vec<HeadScore> {
    let mut scores: Vec<HeadScore> = Vec::new();
    for t in traced {
        let (e, trace, answer_at) = (t.example, &t.trace, &t.answer_at);
        let openers = matching_openers(e, vocab);
        let maps = trace.attention.iter().filter(|m| reads_prefix(m, layout));
        for (m, map) in maps.enumerate() {
            for (h, weights) in map.weights.iter().enumerate() {
                let index = m * map.weights.len() + h;
                if scores.len() <= index {
                    scores.push(HeadScore {
                        layer: map.name.clone(),
                        head: h,
                        hit_rate: 0.0,
                        mean_weight: 0.0,
                        steps: 0,
                    });
                }
                let s = &mut scores[index];
                for (&q, &key) in answer_at.iter().zip(&openers) {
                    let row = &weights[q];
                    let best = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b]));
                    s.hit_rate += f64::from(u8::from(best == Some(key)));
                    s.mean_weight += row[key] as f64;
                    s.steps += 1;
                }
            }
        }
    }
    for s in &mut scores {
        let n = s.steps.max(1) as f64;
        s.hit_rate /= n;
        s.mean_weight /= n;
    }
    scores
}

/// Fits the depth probe on the first half of `examples` and scores it on the second: the
/// representation at each prefix token (the last layer that reads the prefix) against the
/// nesting depth after that token. Returns the report and the held-out (true, predicted).
fn depth_probe(traced: &[Traced], vocab: &Vocab, layout: Layout) -> (ProbeReport, Vec<(f64, f64)>) {
    let mut layer = String::new();
    let mut collect = |part: &[Traced]| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for t in part {
            let (e, trace) = (t.example, &t.trace);
            let side = if layout == Layout::EncoderDecoder {
                Side::Source
            } else {
                Side::Tokens
            };
            let Some(last) = trace.states.iter().rev().find(|l| l.side == side) else {
                continue;
            };
            layer = last.name.clone();
            let mut depth = 0i64;
            for (i, &id) in e.prefix.iter().enumerate() {
                depth += if vocab.is_opener(id) { 1 } else { -1 };
                x.push(last.values[i + 1].clone());
                y.push(depth as f64);
            }
        }
        (x, y)
    };
    let half = traced.len() / 2;
    let (fit_x, fit_y) = collect(&traced[..half]);
    let (test_x, test_y) = collect(&traced[half..]);
    let probe = probe::Probe::fit(&fit_x, &fit_y);
    let predicted: Vec<f64> = test_x
        .iter()
        .map(|x| probe.as_ref().map_or(0.0, |p| p.predict(x)))
        .collect();
    (
        ProbeReport {
            layer,
            r_squared: probe::r_squared(&test_y, &predicted),
            fit_positions: fit_x.len(),
            test_positions: test_x.len(),
        },
        test_y.into_iter().zip(predicted).collect(),
    )
}

impl ExplainReport {
    fn markdown(&self, spec: &Spec) -> String {
        let mut md = format!(
            "# runner explain: `{}` ({} model)\n\nexpected `{}`, teacher-forced argmax `{}`\n\n",
            self.prefix,
            spec.model.arch.name(),
            self.expected,
            self.predicted
        );
        md.push_str(
            "| step | expected | predicted | loss | probabilities |\n|---|---|---|---|---|\n",
        );
        for (k, s) in self.answer_steps.iter().enumerate() {
            let probs: Vec<String> = s
                .probabilities
                .iter()
                .map(|(t, p)| format!("`{t}` {p:.3}"))
                .collect();
            md.push_str(&format!(
                "| {} | `{}` | `{}` | {:.4} | {} |\n",
                k + 1,
                s.expected,
                s.predicted,
                s.loss,
                probs.join(", ")
            ));
        }
        let p = &self.probe;
        md.push_str(&format!(
            "\n## Depth probe\n\nA linear probe from {} to the nesting depth after each prefix \
             token: R² = {:.4} on {} held-out positions (fitted on {}).\n",
            p.layer, p.r_squared, p.test_positions, p.fit_positions
        ));
        if !self.heads.is_empty() {
            md.push_str(
                "\n## Heads and the matching opener (fresh examples, closer steps)\n\n\
                 | layer | head | argmax on the matching opener | mean weight on it |\n|---|---|---|---|\n",
            );
            for h in &self.heads {
                md.push_str(&format!(
                    "| {} | {} | {:.3} | {:.3} |\n",
                    h.layer, h.head, h.hit_rate, h.mean_weight
                ));
            }
            md.push_str(&match &self.matching_head {
                Some(h) => format!(
                    "\n{} head {} attends to the matching opener ({:.1}% of closer steps).\n",
                    h.layer,
                    h.head,
                    100.0 * h.hit_rate
                ),
                None => "\nNo head puts its largest weight on the matching opener at least half \
                         the time.\n"
                    .into(),
            });
        }
        md.push_str("\n## Figures\n\n");
        for f in &self.figures {
            if f.extension().is_some_and(|e| e == "png") {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                md.push_str(&format!("![{name}]({name})\n"));
            }
        }
        md
    }
}

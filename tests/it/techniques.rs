//! Learning techniques, part one: transfer (`model.init_from`, `model.reset`), freezing
//! (`train.freeze`) and LoRA (`model.lora`, `runner merge`).

use crate::common::{Workspace, TINY};
use bracket_closer::model::params;
use bracket_closer::train::checkpoint;
use burn::prelude::Device;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use std::path::Path;

/// A parameter of a run's checkpoint (`best`, `last` or `merged`), by name.
fn weights(run: &Path, slot: &str, name: &str) -> Vec<f32> {
    let loaded = checkpoint::load(&run.join("checkpoints").join(slot), &Device::flex())
        .expect("checkpoint loads");
    params::values(&loaded.model, name).unwrap_or_else(|| {
        let names: Vec<String> = params::list(&loaded.model)
            .into_iter()
            .map(|p| p.name)
            .collect();
        panic!("no parameter {name} in {names:?}")
    })
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn names(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_finetune_takes_parameters_by_name_resets_and_freezes_what_it_is_told() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let base = ws.run_ok("tiny.toml", &[]);
    let from = format!("model.init_from=\"{}\"", base.display());
    let run = ws.run_ok(
        "tiny.toml",
        &[
            &from,
            "model.reset=[\"head\"]",
            "train.freeze=[\"embed\"]",
            "experiment.name=finetune",
        ],
    );
    let start = json(&run.join("start.json"));
    let loaded = names(&start["loaded"]);
    assert!(loaded.contains(&"embed.weight".to_string()), "{loaded:?}");
    assert!(
        loaded.iter().any(|n| n.starts_with("layers.0.")),
        "{loaded:?}"
    );
    assert_eq!(names(&start["reset"]), ["head.weight", "head.bias"]);
    assert_eq!(names(&start["frozen"]), ["embed.weight"]);
    assert!(names(&start["fresh"]).is_empty());
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(
        log.contains("starting from the weights of another run"),
        "{log}"
    );
    assert!(log.contains("frozen (train.freeze)"), "{log}");
    let summary = json(&run.join("summary.json"));
    let (total, trained) = (
        summary["params"].as_u64().unwrap(),
        summary["trained_params"].as_u64().unwrap(),
    );
    let embed_size = weights(&base, "best", "embed.weight").len() as u64;
    assert_eq!(total - trained, embed_size, "{summary}");
    assert_eq!(summary["start"], start);
    let table = ws
        .runner()
        .args(["compare", base.to_str().unwrap(), run.to_str().unwrap()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    let line = table
        .lines()
        .find(|l| l.contains("trained params"))
        .unwrap_or_else(|| panic!("no trained params row in {table}"));
    assert!(line.contains(&trained.to_string()), "{line}");

    // Loaded and frozen: bit for bit what the base run learned. Loaded and trained: moved.
    let embed = "embed.weight";
    assert_eq!(weights(&base, "best", embed), weights(&run, "last", embed));
    let gate = "layers.0.new_gate.hidden_transform.weight";
    assert_ne!(weights(&base, "best", gate), weights(&run, "last", gate));
}

#[test]
fn parameters_that_cannot_be_taken_are_refused_by_name_unless_reset() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let base = ws.run_ok("tiny.toml", &[]);
    let from = format!("model.init_from=\"{}\"", base.display());
    ws.runner()
        .args(["run", "tiny.toml", &from, "model.d_hidden=32"])
        .assert()
        .code(2)
        .stderr(
            contains("model.init_from")
                .and(contains("parameter `layers.0."))
                .and(contains("model.reset")),
        );
    // Reset every part that changed shape: the embedding still comes from the base.
    let run = ws.run_ok(
        "tiny.toml",
        &[
            &from,
            "model.d_hidden=32",
            "model.reset=[\"layers\", \"head\"]",
            "experiment.name=wider",
        ],
    );
    assert_eq!(
        names(&json(&run.join("start.json"))["loaded"]),
        ["embed.weight"]
    );
    for (args, key) in [
        (vec!["train.freeze=[\"embd\"]"], "train.freeze"),
        (vec![&from, "model.reset=[\"heads\"]"], "model.reset"),
        (vec!["model.reset=[\"head\"]"], "model.reset"),
        (
            vec!["model.lora.targets=[\"attn\"]", "model.lora.rank=2"],
            "model.lora.targets",
        ),
    ] {
        ws.runner()
            .arg("run")
            .arg("tiny.toml")
            .args(&args)
            .assert()
            .code(2)
            .stderr(contains(key).and(contains("panicked").not()));
    }
    ws.runner()
        .args(["run", "tiny.toml", &from, "model.arch=gpt"])
        .assert()
        .code(2)
        .stderr(
            contains("model.arch")
                .and(contains("gru"))
                .and(contains("gpt")),
        );
}

const TINY_GPT: &str = r#"
[data]
train_samples = 400
val_samples = 60
test_samples = 60
[model]
arch = "gpt"
d_model = 16
n_heads = 2
d_ff = 32
n_layers = 1
[train]
max_steps = 12
eval_every = 4
batch_size = 16
budget = "2min"
"#;

#[test]
fn lora_trains_only_adapters_and_merged_weights_predict_the_same() {
    let ws = Workspace::new();
    ws.write("gpt.toml", TINY_GPT);
    let base = ws.run_ok("gpt.toml", &[]);
    let from = format!("model.init_from=\"{}\"", base.display());
    let run = ws.run_ok(
        "gpt.toml",
        &[
            &from,
            "model.lora={ rank = 2, alpha = 4, targets = [\"attn\", \"ff\"] }",
            "train.lr=1e-2",
            "experiment.name=lora",
        ],
    );
    let start = json(&run.join("start.json"));
    assert_eq!(names(&start["adapted"]).len(), 6, "{start}");
    // Adapters only: (16x2 + 2x16) x 4 attention matrices, (16x2 + 2x32) + (32x2 + 2x16) ff.
    assert_eq!(start["params"]["trained"], 448, "{start}");
    // Every base weight, adapted or not, is what the base run learned, bit for bit.
    for name in [
        "blocks.layers.0.mha.query.weight",
        "blocks.layers.0.pwff.linear_inner.weight",
        "head.weight",
        "embed.tokens.weight",
    ] {
        assert_eq!(
            weights(&base, "best", name),
            weights(&run, "last", name),
            "{name}"
        );
    }
    ws.runner()
        .args(["merge", run.to_str().unwrap()])
        .assert()
        .success()
        .stdout(contains("checkpoints/merged"));
    // The merged query weight is no longer the base's: the adapters moved it.
    let query = "blocks.layers.0.mha.query.weight";
    assert_ne!(weights(&run, "best", query), weights(&run, "merged", query));
    let mut outputs = Vec::new();
    for slot in ["best", "merged"] {
        let dir = ws.path().join(format!("eval-{slot}"));
        ws.runner()
            .args([
                "eval",
                run.to_str().unwrap(),
                "--samples",
                "200",
                "--seed",
                "5",
            ])
            .args(["--checkpoint", slot, "--report", dir.to_str().unwrap()])
            .assert()
            .success();
        outputs.push(std::fs::read_to_string(dir.join("eval.csv")).unwrap());
    }
    assert_eq!(outputs[0], outputs[1]);
    ws.runner()
        .args(["merge", base.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("model.lora"));
}

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

/// Writes `text` as `file`, runs it: the base run and the override that starts from it.
fn base_run(ws: &Workspace, file: &str, text: &str) -> (std::path::PathBuf, String) {
    ws.write(file, text);
    let base = ws.run_ok(file, &[]);
    let from = format!("model.init_from=\"{}\"", base.display());
    (base, from)
}

#[test]
fn a_finetune_takes_parameters_by_name_resets_and_freezes_what_it_is_told() {
    let ws = Workspace::new();
    let (base, from) = base_run(&ws, "tiny.toml", TINY);
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
    let (_, from) = base_run(&ws, "tiny.toml", TINY);
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
            vec!["model.init_from=\"experiments/nowhere\""],
            "does not exist",
        ),
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
    let (base, from) = base_run(&ws, "gpt.toml", TINY_GPT);
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
    // A resumed LoRA run trains the adapters only, as the run did.
    let loaded =
        checkpoint::load(&run.join("checkpoints/last"), &Device::flex().autodiff()).unwrap();
    assert_eq!(params::counts(&loaded.model).trained, 448);
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

/// The rows of a metrics.csv as maps from column to value.
fn metrics(run: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn language_models_pretrain_without_labels_and_a_finetune_starts_from_them() {
    let ws = Workspace::new();
    ws.write("gpt.toml", TINY_GPT);
    for (arch, extra) in [
        ("gpt", vec![]),
        ("gru", vec![]),
        ("ber", vec!["model.mlm_prob=0.15"]),
    ] {
        let name = format!("experiment.name=lm_{arch}");
        let arch_key = format!("model.arch={arch}");
        let mut args = vec![
            name.as_str(),
            arch_key.as_str(),
            "data.task=\"lm\"",
            "train.max_steps=40",
            "train.eval_every=10",
            "train.lr=1e-2",
        ];
        args.extend(extra);
        let out = ws
            .runner()
            .arg("run")
            .arg("gpt.toml")
            .args(&args)
            .output()
            .unwrap();
        let run = ws.run_dir_of(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("test_loss:"));
        let rows = metrics(&run);
        let loss = |i: usize| rows[i]["val_loss"].parse::<f64>().unwrap();
        let (first, last) = (loss(0), loss(rows.len() - 1));
        // A uniform guess over the 10 tokens scores ln 10 = 2.30.
        eprintln!("{arch}: val_loss {first:.4} -> {last:.4}");
        assert!(
            last < first - 0.1 && last < 2.30 - 0.4,
            "{arch}: val_loss {first} -> {last}"
        );
        assert!(rows.iter().all(|r| r["val_exact"].is_empty()), "{arch}");
        let summary = json(&run.join("summary.json"));
        assert!(summary["test_exact"].is_null() && summary["test_loss"].is_number());
        // The strings hold no `,output`: the model has never seen the closing task.
        let train = std::fs::read_to_string(run.join("dataset/train.jsonl")).unwrap();
        assert!(
            train.lines().all(|l| l.ends_with("\"output\":\"\"}")),
            "{arch}"
        );
        // Scored on the closing task zero-shot by continuing `input` + prefix (a masked
        // LM cannot write one); the suite is for closing models.
        let eval = ws.runner().args(["eval", run.to_str().unwrap()]).assert();
        if arch == "ber" {
            eval.code(2).stderr(contains("masked language model"));
        } else {
            eval.success().stderr(contains("zero-shot"));
        }
        ws.runner()
            .args(["eval", run.to_str().unwrap(), "--suite"])
            .assert()
            .code(2)
            .stderr(contains("language model"));
    }
    let lm = ws.path().join("experiments/lm_gpt");
    let lm = std::fs::read_dir(&lm)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    ws.runner()
        .args(["predict", lm.to_str().unwrap(), "(("])
        .assert()
        .success();
    let from = format!("model.init_from=\"{}\"", lm.display());
    let run = ws.run_ok("gpt.toml", &[&from, "experiment.name=finetune"]);
    let start = json(&run.join("start.json"));
    let all = params::list(
        &checkpoint::load(&run.join("checkpoints/best"), &Device::flex())
            .unwrap()
            .model,
    );
    assert_eq!(names(&start["loaded"]).len(), all.len(), "{start}");
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(log.contains("starting from the weights of another run"));
    assert!(log.contains("lm_gpt"), "{log}");
}

#[test]
fn impossible_technique_settings_are_refused_by_key() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    for (args, key) in [
        (vec!["data.task=\"lm\"", "model.arch=tra"], "data.task"),
        (vec!["data.task=\"lm\"", "model.arch=ber"], "model.mlm_prob"),
        (vec!["data.task=\"story\""], "data.task"),
        (vec!["data.stages=[{ max_len = 6 }]"], "data.stages[0]"),
        (
            vec!["data.stages=[{ max_len = 40, share = 0.2 }]"],
            "data.stages[0].max_len",
        ),
        (
            vec!["data.stages=[{ max_len = 6, share = 1.5 }]"],
            "data.stages[0].share",
        ),
        (
            vec!["data.stages=[{ max_len = 6, until_exact = 0 }]"],
            "data.stages[0].until_exact",
        ),
        (
            vec!["data.stages=[{ max_len = 6, share = 0.6 }, { max_len = 9, share = 0.5 }]"],
            "data.stages",
        ),
        (vec!["data.stages=[{ max_len = 6, when = 0.5 }]"], "when"),
        (
            vec!["model.lora={ rank = 0 }", "model.arch=gpt"],
            "model.lora.rank",
        ),
        (
            vec![
                "model.lora={ rank = 2 }",
                "model.arch=gpt",
                "train.freeze=[\"embed\"]",
            ],
            "train.freeze",
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
    assert!(!ws.path().join("experiments").exists(), "nothing written");
}

/// The shipped technique configs, in the order a user runs them, at a tiny size.
#[test]
fn the_technique_configs_run_in_order() {
    let ws = Workspace::new();
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/techniques");
    let tiny = [
        "model.d_model=16",
        "model.n_heads=2",
        "model.d_ff=32",
        "model.n_layers=1",
        "data.train_samples=300",
        "data.val_samples=60",
        "data.test_samples=60",
        "train.max_steps=24",
        "train.eval_every=6",
        "train.budget=\"2min\"",
    ];
    let mut runs = Vec::new();
    for name in [
        "pretrain_gpt_lm",
        "finetune_gpt_from_lm",
        "lora_gpt",
        "curriculum_gru",
    ] {
        let spec = configs.join(format!("{name}.toml"));
        let mut args: Vec<&str> = tiny.to_vec();
        if name == "curriculum_gru" {
            args.retain(|a| !a.starts_with("model."));
        }
        runs.push(ws.run_ok(spec.to_str().unwrap(), &args));
    }
    let lm = &runs[0];
    for finetune in &runs[1..3] {
        let start = json(&finetune.join("start.json"));
        assert!(
            start["init_from"]
                .as_str()
                .unwrap()
                .contains(lm.file_name().unwrap().to_str().unwrap()),
            "{start}"
        );
    }
    ws.runner()
        .args(["merge", runs[2].to_str().unwrap()])
        .assert()
        .success();
    let stages: Vec<String> = metrics(&runs[3])
        .iter()
        .map(|r| r["stage"].clone())
        .collect();
    assert_eq!(stages.first().map(String::as_str), Some("0"), "{stages:?}");
    assert_eq!(stages.last().map(String::as_str), Some("2"), "{stages:?}");
}

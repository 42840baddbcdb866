//! Text mode through the binary, on a tiny corpus and model: a few steps lower the loss and
//! write the tokenizer and perplexity; generation is deterministic for a seed; the Hugging
//! Face export lists every tensor with the shape its config.json implies; bad corpora,
//! contexts and prompts are refused with exit 2.

use crate::common::Workspace;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use std::path::Path;

/// English and Japanese lines, so that byte-level BPE and the character tokenizer both see
/// multi-byte text.
fn corpus() -> String {
    let english = "And God said, Let there be light: and there was light.\n\
                   And God saw the light, that it was good.\n\
                   And the evening and the morning were the first day.\n";
    let japanese = "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。\n";
    format!("{english}{japanese}").repeat(12)
}

/// A text spec of a few steps; `extra` lines go into its [train] table.
fn spec(tokenizer: &str, extra: &str) -> String {
    format!(
        r#"
[data]
source = "text"
corpus = "corpus.txt"
context_length = 32
vocab_size = 400
tokenizer = "{tokenizer}"
val_fraction = 0.2
[model]
arch = "gpt"
d_model = 32
n_heads = 2
d_ff = 64
n_layers = 2
[train]
max_steps = 30
eval_every = 10
batch_size = 8
lr = 3e-3
warmup_steps = 5
budget = "2min"
{extra}
"#
    )
}

fn column(run: &Path, name: &str) -> Vec<String> {
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no {name} column"));
    reader
        .records()
        .map(|r| r.unwrap()[col].to_string())
        .collect()
}

fn numbers(run: &Path, name: &str) -> Vec<f64> {
    column(run, name)
        .iter()
        .map(|v| v.parse().unwrap())
        .collect()
}

fn generate(ws: &Workspace, run: &Path, extra: &[&str]) -> String {
    let out = ws
        .runner()
        .arg("generate")
        .arg(run)
        .args(["--prompt", "And God", "--max-new-tokens", "12"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_text_run_learns_writes_its_tokenizer_and_generates_deterministically() {
    let ws = Workspace::new();
    ws.write("corpus.txt", &corpus());
    ws.write("t.toml", &spec("bpe", ""));
    let run = ws.run_ok("t.toml", &[]);
    assert!(run.join("tokenizer.json").is_file());
    assert!(run.join("dataset/text.json").is_file());
    let val = numbers(&run, "val_loss");
    assert_eq!(val.len(), 3);
    assert!(
        val[2] < val[0] - 0.5,
        "validation loss did not fall: {val:?}"
    );
    let ppl = numbers(&run, "val_ppl");
    for (p, l) in ppl.iter().zip(&val) {
        assert!((p - l.exp()).abs() < 1e-6 * p, "{p} vs exp({l})");
    }
    assert!(column(&run, "val_exact").iter().all(String::is_empty));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert!(summary["tokens_per_s"].as_f64().unwrap() > 0.0, "{summary}");

    let greedy = generate(&ws, &run, &[]);
    assert!(greedy.starts_with("And God"), "{greedy}");
    assert_eq!(greedy, generate(&ws, &run, &[]));
    let sampled = ["--temperature", "0.9", "--top-k", "20", "--seed", "3"];
    let first = generate(&ws, &run, &sampled);
    assert_eq!(first, generate(&ws, &run, &sampled), "same seed, same text");
    let others: Vec<String> = (4..8)
        .map(|seed| {
            let seed = seed.to_string();
            generate(&ws, &run, &["--temperature", "1.5", "--seed", &seed])
        })
        .collect();
    assert!(
        others.iter().any(|o| o != &others[0]),
        "different seeds all gave {others:?}"
    );

    // A text run is not scored on bracket closings.
    ws.runner()
        .arg("eval")
        .arg(&run)
        .assert()
        .code(2)
        .stderr(contains("runner generate"));
}

#[test]
fn a_char_tokenizer_reads_japanese_and_refuses_an_unknown_prompt_character() {
    let ws = Workspace::new();
    ws.write("corpus.txt", &corpus());
    ws.write("c.toml", &spec("char", ""));
    let run = ws.run_ok("c.toml", &["train.max_steps=10"]);
    let out = ws
        .runner()
        .arg("generate")
        .arg(&run)
        .args(["--prompt", "吾輩は", "--max-new-tokens", "5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("吾輩は"));
    ws.runner()
        .arg("generate")
        .arg(&run)
        .args(["--prompt", "And Zeus"])
        .assert()
        .code(2)
        .stderr(contains("--prompt").and(contains("'Z'")));
    // The run's tokenizer.json is reused by another run.
    let reuse = run.join("tokenizer.json");
    let choice = format!("data.tokenizer=\"{}\"", reuse.display());
    let again = ws.run_ok(
        "c.toml",
        &[choice.as_str(), "train.max_steps=2", "train.eval_every=2"],
    );
    assert_eq!(
        std::fs::read_to_string(again.join("tokenizer.json")).unwrap(),
        std::fs::read_to_string(&reuse).unwrap()
    );
}

#[test]
fn the_hf_export_lists_every_tensor_with_the_shape_of_its_config() {
    let ws = Workspace::new();
    ws.write("corpus.txt", &corpus());
    ws.write("t.toml", &spec("bpe", ""));
    let run = ws.run_ok("t.toml", &["train.max_steps=2", "train.eval_every=2"]);
    ws.runner()
        .arg("export")
        .arg(&run)
        .args(["--format", "hf", "--out", "hf"])
        .assert()
        .success();
    let dir = ws.path().join("hf");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    let n = |k: &str| config[k].as_u64().unwrap() as usize;
    let (v, p, d, f) = (n("vocab_size"), n("n_positions"), n("n_embd"), n("n_inner"));
    let mut expected = vec![
        ("transformer.wte.weight".to_string(), vec![v, d]),
        ("transformer.wpe.weight".to_string(), vec![p, d]),
        ("transformer.ln_f.weight".to_string(), vec![d]),
        ("transformer.ln_f.bias".to_string(), vec![d]),
    ];
    for i in 0..n("n_layer") {
        let h = |s: &str| format!("transformer.h.{i}.{s}");
        for (name, shape) in [
            ("ln_1.weight", vec![d]),
            ("ln_1.bias", vec![d]),
            ("attn.c_attn.weight", vec![d, 3 * d]),
            ("attn.c_attn.bias", vec![3 * d]),
            ("attn.c_proj.weight", vec![d, d]),
            ("attn.c_proj.bias", vec![d]),
            ("ln_2.weight", vec![d]),
            ("ln_2.bias", vec![d]),
            ("mlp.c_fc.weight", vec![d, f]),
            ("mlp.c_fc.bias", vec![f]),
            ("mlp.c_proj.weight", vec![f, d]),
            ("mlp.c_proj.bias", vec![d]),
        ] {
            expected.push((h(name), shape));
        }
    }
    expected.sort();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    assert_eq!(header["__metadata__"]["format"], "pt");
    let mut found: Vec<(String, Vec<usize>)> = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, t)| {
            assert_eq!(t["dtype"], "F32", "{k}");
            let shape = t["shape"].as_array().unwrap();
            (
                k.clone(),
                shape.iter().map(|s| s.as_u64().unwrap() as usize).collect(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(found, expected);
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    // A bracket run has no GPT-2 form, but its weights export as safetensors.
    ws.write("b.toml", crate::common::TINY);
    let bracket = ws.run_ok("b.toml", &[]);
    let export = |format: &str, out: &str| {
        ws.runner()
            .arg("export")
            .arg(&bracket)
            .args(["--format", format, "--out", out])
            .assert()
    };
    export("hf", "x")
        .code(2)
        .stderr(contains("--format safetensors"));
    export("safetensors", "b.toml")
        .code(2)
        .stderr(contains("--out"));
    export("safetensors", "st").success();
    assert!(ws.path().join("st/model.safetensors").is_file());
    assert!(ws.path().join("st/spec.toml").is_file());
}

/// `runner run t.toml` with `overrides` exits 2 with every one of `wanted` in its stderr.
fn refused(ws: &Workspace, overrides: &[&str], wanted: &[&str]) {
    let out = ws
        .runner()
        .args(["run", "t.toml"])
        .args(overrides)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{overrides:?}: {stderr}");
    for w in wanted {
        assert!(stderr.contains(w), "{overrides:?}: no '{w}' in {stderr}");
    }
}

#[test]
fn bad_corpora_and_contexts_are_refused_before_anything_is_written() {
    let ws = Workspace::new();
    ws.write("t.toml", &spec("bpe", ""));
    ws.write("corpus.txt", " \n");
    refused(&ws, &[], &["data.corpus", "is empty"]);
    std::fs::write(ws.path().join("corpus.txt"), b"fine\nna\xefve\n").unwrap();
    refused(&ws, &[], &["not UTF-8", "line 2"]);
    refused(&ws, &["data.corpus=\"missing.txt\""], &["missing.txt"]);
    ws.write("corpus.txt", &corpus());
    let cases: [(&[&str], &[&str]); 4] = [
        (&["model.max_positions=16"], &["data.context_length"]),
        (
            &[
                "data.context_length=4096",
                "data.vocab_size=50000",
                "train.batch_size=512",
            ],
            &["GiB", "train.batch_size"],
        ),
        (&["model.arch=gru"], &["model.arch"]),
        (&["data.tokenizer=\"nope\""], &["data.tokenizer"]),
    ];
    for (overrides, wanted) in cases {
        refused(&ws, overrides, wanted);
    }
    assert!(
        !ws.path().join("experiments").exists(),
        "a refused spec wrote {:?}",
        ws.outputs(&["t.toml", "corpus.txt"])
    );
}

/// The logits after a prompt, as `runner generate --json` prints them.
fn first_logits(ws: &Workspace, run: &Path) -> Vec<serde_json::Value> {
    let out = ws
        .runner()
        .arg("generate")
        .arg(run)
        .args(["--prompt", "And God", "--max-new-tokens", "1", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    value["first_logits"].as_array().unwrap().clone()
}

#[test]
fn an_interrupted_text_run_resumes_to_the_same_metrics_and_weights() {
    let ws = Workspace::new();
    ws.write("corpus.txt", &corpus());
    let spec = spec("bpe", "")
        .replace("max_steps = 30", "max_steps = 400")
        .replace("eval_every = 10", "eval_every = 20")
        .replace("n_layers = 2", "n_layers = 2\ndropout = 0.1");
    let (whole, cut) = crate::faults::interrupted_and_resumed(&ws, &spec, 400);
    assert_eq!(
        crate::faults::regular_rows(&whole),
        crate::faults::regular_rows(&cut)
    );
    assert_eq!(first_logits(&ws, &whole), first_logits(&ws, &cut));
    assert_eq!(
        std::fs::read_to_string(whole.join("tokenizer.json")).unwrap(),
        std::fs::read_to_string(cut.join("tokenizer.json")).unwrap()
    );
}

#[test]
fn text_runs_sweep_and_compare() {
    let ws = Workspace::new();
    ws.write("corpus.txt", &corpus());
    let study = format!(
        "{}\n[sweep]\nsampler = \"grid\"\ntrials = 2\n[sweep.space]\n\
         \"train.lr\" = {{ choice = [1e-3, 3e-3] }}\n",
        spec("bpe", "").replace("max_steps = 30", "max_steps = 10")
    );
    ws.write("s.toml", &study);
    ws.runner()
        .args(["sweep", "s.toml"])
        .assert()
        .code(2)
        .stderr(contains("sweep.objective"));
    ws.write(
        "s.toml",
        &study.replace("trials = 2", "trials = 2\nobjective = \"val_loss\""),
    );
    ws.runner().args(["sweep", "s.toml"]).assert().success();
    let out = ws
        .runner()
        .args(["compare", "experiments/s", "--format", "csv"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("0.001") && table.contains("0.003"),
        "{table}"
    );
    // With no exact match to draw, the upper panel is the validation loss.
    ws.runner()
        .args(["compare", "experiments/s", "--plot", "curves.svg"])
        .assert()
        .success();
    let svg = std::fs::read_to_string(ws.path().join("curves.svg")).unwrap();
    assert!(svg.contains("validation loss") && svg.contains("val_loss"));
    assert!(!svg.contains("validation exact match"));
}

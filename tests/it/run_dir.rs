//! A tiny run through the binary: every file of the run directory, then eval, predict, ls.

use crate::common::{Workspace, TINY};
use predicates::str::contains;
use std::path::Path;

const HEADER: &str =
    "step,epoch,elapsed_s,samples,train_loss,val_loss,val_token_acc,val_exact,lr,stage,reward,val_ppl";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn run_writes_every_file_of_the_run_directory() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &["train.lr=1e-2"]);
    assert!(
        run.starts_with(ws.path().join("experiments/tiny")),
        "{}",
        run.display()
    );

    let resolved = read(&run.join("resolved.toml"));
    assert!(
        resolved.contains("lr = 0.01") && resolved.contains("name = \"tiny\""),
        "{resolved}"
    );
    assert!(read(&run.join("run.log")).contains("eval"));
    let start: serde_json::Value = serde_json::from_str(&read(&run.join("start.json"))).unwrap();
    assert_eq!(
        start["params"]["total"], start["params"]["trained"],
        "{start}"
    );

    let metrics = read(&run.join("metrics.csv"));
    let mut lines = metrics.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let steps: Vec<&str> = lines.map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(steps, ["4", "8", "12"]);

    for which in ["best", "last"] {
        for file in ["model.bpk", "optim.bpk", "state.json", "spec.toml"] {
            assert!(
                run.join("checkpoints").join(which).join(file).is_file(),
                "{which}/{file}"
            );
        }
    }

    let summary: serde_json::Value =
        serde_json::from_str(&read(&run.join("summary.json"))).unwrap();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["stop_reason"], "max_steps");
    assert_eq!(summary["steps"], 12);
    assert_eq!(summary["test_total"], 60);
    assert!(summary["params"].as_u64().unwrap() > 0);
    for key in [
        "best_val_exact",
        "best_step",
        "test_exact",
        "wall_s",
        "backend",
        "samples_per_s",
    ] {
        assert!(!summary[key].is_null(), "summary lacks {key}");
    }

    let eval_csv = read(&run.join("eval.csv"));
    assert!(eval_csv.starts_with("input,expected,predicted,correct\n"));
    assert_eq!(eval_csv.lines().count(), 61);
    let report = read(&run.join("report.txt"));
    assert!(report.starts_with("問題1 "), "{report}");
    assert!(report.contains("正解率: "));

    for split in ["train", "val", "test"] {
        for form in ["original", "tokenized", "padded"] {
            assert!(run
                .join("dataset")
                .join(form)
                .join(format!("{split}.json"))
                .is_file());
        }
        assert!(run.join("dataset").join(format!("{split}.jsonl")).is_file());
    }
    let original = read(&run.join("dataset/original/val.json"));
    assert!(
        original.contains("\"input:") && original.contains(",output:"),
        "{original}"
    );

    let leftovers: Vec<_> = ws
        .outputs(&[])
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-") || p.to_string_lossy().ends_with(".new"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn eval_predict_and_ls_use_the_run() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    ws.write(
        "small.jsonl",
        "{\"input\": \"【()】{\", \"output\": \"}\"}\n{\"input\": \"((\", \"output\": \"))\"}\n",
    );
    ws.runner()
        .args(["eval", run.to_str().unwrap(), "--data", "small.jsonl"])
        .assert()
        .success()
        .stdout(contains("exact: ").and(contains("/2)")));
    let out = ws
        .runner()
        .args(["eval", run.to_str().unwrap(), "--samples", "30", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["total"], 30);
    assert!(json["exact"].is_number() && json["correct"].is_number());
    assert!(json["by_answer_len"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));

    // The model's closing, or its closing and the note with the right one.
    let out = ws
        .runner()
        .args(["predict", run.to_str().unwrap(), "【{("])
        .output()
        .unwrap();
    assert!(out.status.success());
    let written = String::from_utf8_lossy(&out.stdout);
    let note = String::from_utf8_lossy(&out.stderr);
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(
        written.trim() == ")}】" || note.contains("the correct closing is ')}】'"),
        "stdout {written:?}, stderr {note:?}"
    );

    ws.runner()
        .args(["ls"])
        .assert()
        .success()
        .stdout(contains("tiny").and(contains("completed")));
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn eval_data_errors_name_the_line() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    ws.write(
        "bad.jsonl",
        "{\"input\": \"((\", \"output\": \"))\"}\n{\"input\": \"(<\", \"output\": \">)\"}\n\
         {\"input\": \"(\", \"output\": \"}\"}\n",
    );
    ws.runner()
        .args(["eval", run.to_str().unwrap(), "--data", "bad.jsonl"])
        .assert()
        .code(2)
        .stderr(contains("bad.jsonl:2").and(contains("'<'")));
    ws.runner()
        .args([
            "eval",
            run.to_str().unwrap(),
            "--data",
            "bad.jsonl",
            "--skip-invalid",
        ])
        .assert()
        .success()
        .stdout(contains("skipped 2 invalid lines").and(contains("/1)")));
    ws.runner()
        .args(["eval", run.to_str().unwrap(), "--data", "missing.jsonl"])
        .assert()
        .code(2)
        .stderr(contains("missing.jsonl"));
    ws.runner()
        .args(["predict", run.to_str().unwrap(), "(["])
        .assert()
        .code(2)
        .stderr(contains("'['"));
}

#[test]
fn corrupt_checkpoint_is_a_clear_error() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    let model = run.join("checkpoints/best/model.bpk");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    ws.runner()
        .args(["predict", run.to_str().unwrap(), "(("])
        .assert()
        .code(2)
        .stderr(contains("model.bpk").and(contains("panicked").not()));
}

#[test]
fn same_spec_same_metrics_except_timing() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let a = ws.run_ok("tiny.toml", &[]);
    let b = ws.run_ok("tiny.toml", &[]);
    assert_ne!(a, b, "a second run gets its own directory");
    let strip = |dir: &Path| crate::common::without_elapsed(&read(&dir.join("metrics.csv")));
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(read(&a.join("eval.csv")), read(&b.join("eval.csv")));
    // Running the saved resolved.toml reproduces the run too.
    let c = ws.run_ok(a.join("resolved.toml").to_str().unwrap(), &[]);
    assert_eq!(strip(&a), strip(&c));
}

/// `experiment.threads = 2` splits each training batch across two threads: the run
/// repeats exactly, and its losses are one thread's to rounding (the split's gradient is
/// the whole batch's).
#[test]
fn two_threads_repeat_exactly_and_agree_with_one() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: one core");
        return;
    }
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let gpt = [
        "model.arch=gpt",
        "model.d_model=16",
        "model.n_heads=2",
        "model.d_ff=32",
        "model.n_layers=1",
    ];
    let two: Vec<&str> = gpt
        .iter()
        .copied()
        .chain(["experiment.threads=2"])
        .collect();
    let a = ws.run_ok("tiny.toml", &two);
    let b = ws.run_ok("tiny.toml", &two);
    let one = ws.run_ok("tiny.toml", &gpt);
    let strip = |dir: &Path| crate::common::without_elapsed(&read(&dir.join("metrics.csv")));
    assert_eq!(strip(&a), strip(&b));
    // train_loss and val_loss of every evaluation.
    let losses = |dir: &Path| -> Vec<f64> {
        read(&dir.join("metrics.csv"))
            .lines()
            .skip(1)
            .flat_map(|line| {
                let cells: Vec<&str> = line.split(',').collect();
                [cells[4].parse::<f64>().unwrap(), cells[5].parse().unwrap()]
            })
            .collect()
    };
    let (split, whole) = (losses(&a), losses(&one));
    assert_eq!(split.len(), whole.len());
    assert!(split.len() >= 6, "{split:?}");
    for (s, w) in split.iter().zip(&whole) {
        assert!((s - w).abs() <= 1e-4 * w.abs().max(1.0), "{s} vs {w}");
    }
}

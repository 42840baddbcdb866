//! `runner bench` through the binary, at the smallest settings.

use crate::common::Workspace;
use predicates::str::contains;

#[test]
fn bench_measures_an_architecture_and_writes_its_csv() {
    let ws = Workspace::new();
    ws.runner()
        .args([
            "bench",
            "--arch",
            "gpt",
            "--windows",
            "1",
            "--window-steps",
            "2",
            "--out",
            "b",
        ])
        .assert()
        .success()
        .stdout(contains("gpt").and(contains("train samp/s")));
    let text = only_csv(&ws.path().join("b"));
    assert!(text.starts_with(
        "arch,device,threads,batch_size,batching,overrides,params,train_samples_per_s"
    ));
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().nth(1).unwrap().contains(",bucketed,"));
    // The sixth architecture is measured the same way.
    ws.runner()
        .args([
            "bench",
            "--arch",
            "stack",
            "--windows",
            "1",
            "--window-steps",
            "2",
        ])
        .args(["--out", "s"])
        .assert()
        .success()
        .stdout(contains("stack"));
    ws.runner()
        .args(["bench", "--arch", "rnn"])
        .assert()
        .code(2)
        .stderr(contains("possible values: gru"));
    ws.runner()
        .args(["bench", "--arch", "gru", "--set", "model.activation=relu"])
        .assert()
        .code(2)
        .stderr(contains("model.activation"));
}

/// The origin project's fixed-length batches, for measuring what bucketing gives: attention
/// models get a positional table as long as the padding.
#[test]
fn bench_pads_batches_to_a_fixed_width() {
    let ws = Workspace::new();
    ws.runner()
        .args([
            "bench",
            "--arch",
            "tra",
            "--batching",
            "shuffled",
            "--pad-to",
            "48",
        ])
        .args(["--set", "model.activation=relu"])
        .args(["--windows", "1", "--window-steps", "2", "--out", "b"])
        .assert()
        .success();
    let text = only_csv(&ws.path().join("b"));
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .contains(",shuffled+pad48,model.activation=relu,"));
}

/// The text of the one file `runner bench` wrote into `dir`.
fn only_csv(dir: &std::path::Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read_to_string(files.pop().unwrap()).unwrap()
}

use predicates::prelude::PredicateBooleanExt;

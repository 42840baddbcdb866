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
    let csv = std::fs::read_dir(ws.path().join("b"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(csv).unwrap();
    assert!(text.starts_with("arch,device,threads,batch_size,params,train_samples_per_s"));
    assert_eq!(text.lines().count(), 2);
    ws.runner()
        .args(["bench", "--arch", "rnn"])
        .assert()
        .failure()
        .stderr(contains("allowed: gru"));
}

use predicates::prelude::PredicateBooleanExt;

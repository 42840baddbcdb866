//! What a run learns from, beyond the labels' cross-entropy, through the binary: REINFORCE
//! (`train.objective = "reinforce"`) logs its reward; rules in the loss (`[[train.rules]]`)
//! train, and a rule of an unknown kind or pair is refused with what is allowed.

use crate::common::{Workspace, TINY};
use predicates::str::contains;

#[test]
fn a_reinforce_run_logs_its_reward_and_ber_is_refused() {
    let ws = Workspace::new();
    ws.write(
        "r.toml",
        // TINY ends in its [train] table.
        &format!("{TINY}objective = \"reinforce\"\npartial_credit = true\n"),
    );
    let run = ws.run_ok("r.toml", &[]);
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = header
        .iter()
        .position(|h| h == "reward")
        .expect("a reward column");
    let rewards: Vec<f64> = reader
        .records()
        .map(|r| r.unwrap()[col].parse().expect("every row has a reward"))
        .collect();
    assert!(!rewards.is_empty());
    assert!(
        rewards.iter().all(|r| (0.0..=1.0).contains(r)),
        "{rewards:?}"
    );
    ws.runner()
        .args(["run", "r.toml", "model.arch=ber"])
        .assert()
        .code(2)
        .stderr(contains("train.objective"));
}

#[test]
fn rules_train_and_bad_rules_are_refused() {
    let ws = Workspace::new();
    let rules = "rule_weight = 2.0\n\
                 [[train.rules]]\ntext = \"( is closed by )\"\npair = \"()\"\n\
                 [[train.rules]]\ntext = \"innermost first\"\nkind = \"stack_order\"\n";
    ws.write("rules.toml", &format!("{TINY}{rules}"));
    let run = ws.run_ok("rules.toml", &[]);
    let resolved = std::fs::read_to_string(run.join("resolved.toml")).unwrap();
    assert!(resolved.contains("stack_order"), "{resolved}");
    ws.runner()
        .args([
            "run",
            "rules.toml",
            "train.rules=[{text=\"x\", kind=\"queue\"}]",
        ])
        .assert()
        .code(2)
        .stderr(contains("allowed: pair, stack_order"));
    ws.runner()
        .args([
            "run",
            "rules.toml",
            "train.rules=[{text=\"x\", pair=\"<>\"}]",
        ])
        .assert()
        .code(2)
        .stderr(contains("train.rules.0.pair"));
}

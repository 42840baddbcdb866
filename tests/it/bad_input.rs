//! Every kind of bad input: exit code 2, one message naming the file and key, nothing written.

use crate::common::{Workspace, TINY};
use predicates::str::contains;

/// Runs `runner run spec.toml <overrides>` on `spec_text` and checks the failure.
fn rejects(spec_text: &str, overrides: &[&str], expected: &[&str]) {
    let ws = Workspace::new();
    ws.write("spec.toml", spec_text);
    let mut assert = ws
        .runner()
        .arg("run")
        .arg("spec.toml")
        .args(overrides)
        .assert()
        .code(2);
    for text in expected {
        assert = assert.stderr(contains(*text));
    }
    assert.stderr(contains("panicked").not());
    let written = ws.outputs(&["spec.toml"]);
    assert!(written.is_empty(), "bad input wrote {written:?}");
}

use predicates::prelude::PredicateBooleanExt;

#[test]
fn unknown_key_suggests_the_nearest() {
    rejects(
        "[train]\nlrr = 0.1\n",
        &[],
        &["spec.toml", "train.lrr", "did you mean 'train.lr'"],
    );
    rejects(
        "[trainer]\nlr = 0.1\n",
        &[],
        &["spec.toml", "trainer", "unknown key"],
    );
}

#[test]
fn wrong_types_are_named() {
    rejects(
        "[train]\nlr = \"fast\"\n",
        &[],
        &["spec.toml", "train.lr", "wrong type"],
    );
    rejects("[model]\nd_hidden = -5\n", &[], &["model.d_hidden"]);
    rejects("[train]\neval_every = true\n", &[], &["train.eval_every"]);
}

#[test]
fn impossible_values_are_named() {
    rejects(
        "[data]\ntrain_samples = 0\n",
        &[],
        &["data.train_samples", "at least 1"],
    );
    rejects("[model]\nn_layers = 0\n", &[], &["model.n_layers"]);
    rejects(
        "[data]\nmin_len = 9\nmax_len = 3\n",
        &[],
        &["data.min_len", "must not exceed"],
    );
    rejects("[train]\nlr = -0.1\n", &[], &["train.lr", "positive"]);
    rejects(
        "[data]\nmax_len = 3\n",
        &[],
        &["data.train_samples", "distinct prefixes"],
    );
}

#[test]
fn bad_pairs_are_named() {
    rejects(
        "[data]\npairs = []\n",
        &[],
        &["data.pairs", "at least one pair"],
    );
    rejects(
        "[data]\npairs = [\"()\", \"()\"]\n",
        &[],
        &["data.pairs", "used twice"],
    );
    rejects(
        "[data]\npairs = [\"(((\"]\n",
        &[],
        &["data.pairs", "exactly two distinct"],
    );
    rejects("[data]\npairs = [\"((\"]\n", &[], &["data.pairs"]);
}

#[test]
fn unparsable_budget_unknown_arch_and_device() {
    rejects(
        "[train]\nbudget = \"soon\"\n",
        &[],
        &["train.budget", "10min"],
    );
    rejects(
        "[model]\narch = \"rnn\"\n",
        &[],
        &["model.arch", "gru", "lstm"],
    );
    rejects(
        "[experiment]\ndevice = \"tpu\"\n",
        &[],
        &["experiment.device", "cuda:N"],
    );
    if !cfg!(feature = "cuda") {
        rejects(
            "[experiment]\ndevice = \"cuda\"\n",
            &[],
            &["--features cuda"],
        );
    }
}

#[test]
fn bad_overrides_are_named() {
    rejects(TINY, &["train.lr"], &["train.lr", "key.path=value"]);
    rejects(
        TINY,
        &["train.lrr=1"],
        &["train.lrr", "did you mean 'train.lr'"],
    );
    rejects(
        TINY,
        &["train.lr=fast"],
        &["command-line override", "train.lr"],
    );
    rejects(
        TINY,
        &["experiment.name=../escape"],
        &["experiment.name", "path separators"],
    );
}

#[test]
fn syntax_errors_and_missing_files() {
    rejects("[train\nlr = 1\n", &[], &["spec.toml", "not valid TOML"]);
    let ws = Workspace::new();
    ws.runner()
        .args(["run", "nope.toml"])
        .assert()
        .code(2)
        .stderr(contains("nope.toml").and(contains("not found")));
    ws.runner()
        .args(["run", "gru_nope"])
        .assert()
        .code(2)
        .stderr(contains("configs/gru_nope.toml"));
}

#[test]
fn sizes_this_machine_cannot_hold_are_refused_before_anything_is_written() {
    rejects(
        TINY,
        &["model.d_hidden=100000000"],
        &["model.d_hidden", "GiB"],
    );
    rejects(
        TINY,
        &["data.train_samples=10000000000"],
        &["data.train_samples", "GiB"],
    );
    rejects(
        TINY,
        &["experiment.threads=100000"],
        &["command-line override 'experiment.threads=100000'", "cores"],
    );
    rejects(
        TINY,
        &["train.batch_size=100000000"],
        &["train.batch_size", "training examples"],
    );
    let long = format!("experiment.name={}", "n".repeat(256));
    rejects(TINY, &[&long], &["experiment.name", "at most 100"]);
}

#[test]
fn a_bad_command_line_value_is_blamed_on_the_command_line() {
    rejects(
        TINY,
        &["train.lr=-1"],
        &["command-line override 'train.lr=-1'", "train.lr"],
    );
    let ws = Workspace::new();
    ws.write("spec.toml", TINY);
    ws.runner()
        .args(["run", "spec.toml", "train.lr=-1"])
        .assert()
        .code(2)
        .stderr(contains("spec.toml:").not());
}

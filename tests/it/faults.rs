//! Interrupt and resume, continued training, and damaged or unwritable files.

use crate::common::{Workspace, TINY};
use bracket_closer::data::batcher::make_batch;
use bracket_closer::data::dataset;
use bracket_closer::train::checkpoint;
use burn::prelude::Device;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough to be interrupted mid-run; dropout on, so the device generator matters too.
const LONG: &str = r#"
[data]
train_samples = 400
val_samples = 60
test_samples = 60
[model]
d_embed = 8
d_hidden = 16
n_layers = 2
dropout = 0.1
[train]
max_steps = 600
eval_every = 20
batch_size = 16
budget = "5min"
"#;

/// Metrics rows at the regular evaluations, without the elapsed time.
pub(crate) fn regular_rows(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split(',').next().unwrap().parse::<u64>().unwrap() % 20 == 0)
        .map(|l| {
            let mut cols: Vec<&str> = l.split(',').collect();
            cols.remove(2);
            cols.join(",")
        })
        .collect()
}

/// Logits of the last checkpoint on a fixed batch: equal logits, equal weights.
fn last_logits(dir: &Path) -> Vec<f32> {
    let _turn = crate::common::burn_rng_lock();
    let device = Device::flex();
    let loaded = checkpoint::load(&dir.join("checkpoints/last"), &device).unwrap();
    let vocab = dataset::vocab(&loaded.spec);
    let examples = dataset::fresh(&loaded.spec, &vocab, 16, 5);
    let refs: Vec<_> = examples.iter().collect();
    let layout = bracket_closer::model::layout(&loaded.spec, &vocab);
    let batch = make_batch(&refs, &vocab, layout, &device, None);
    loaded
        .model
        .forward(&batch)
        .to_data()
        .iter::<f32>()
        .collect()
}

#[test]
fn an_interrupted_run_resumes_to_the_same_metrics_and_weights() {
    resumes_to_the_same_metrics_and_weights(&Workspace::new(), LONG);
}

/// A curriculum whose first stage ends at the third evaluation, about when the run is
/// interrupted, and whose second ends on exact match or a fifth of the steps.
#[test]
fn an_interrupted_curriculum_resumes_in_its_stage() {
    let spec = format!(
        "{LONG}\n[[data.stages]]\nmax_len = 6\nshare = 0.1\n\n[[data.stages]]\nmax_len = 12\nuntil_exact = 0.9\nshare = 0.2\n"
    );
    let ws = Workspace::new();
    let whole = resumes_to_the_same_metrics_and_weights(&ws, &spec);
    let mut metrics = csv::Reader::from_path(whole.join("metrics.csv")).unwrap();
    let stage = metrics
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "stage")
        .expect("a stage column");
    let stages: Vec<String> = metrics
        .records()
        .map(|r| r.unwrap()[stage].to_string())
        .collect();
    let first_of = |s: &str| stages.iter().position(|x| x == s);
    // Stage 0 for 60 steps (three rows), stage 1 for at most 120, then the data's own.
    assert_eq!(first_of("1"), Some(3), "{stages:?}");
    assert!(first_of("2").is_some_and(|i| i <= 9), "{stages:?}");
    assert!(stages.windows(2).all(|w| w[0] <= w[1]), "{stages:?}");
    let log = std::fs::read_to_string(whole.join("run.log")).unwrap();
    assert_eq!(log.matches("curriculum: next stage").count(), 2, "{log}");
}

/// Runs `spec` in `ws` whole and interrupted-then-resumed: the same rows and weights.
/// Returns the whole run's directory.
fn resumes_to_the_same_metrics_and_weights(ws: &Workspace, spec: &str) -> std::path::PathBuf {
    let (whole, cut) = interrupted_and_resumed(ws, spec, 600);
    assert_eq!(regular_rows(&whole), regular_rows(&cut));
    assert_eq!(last_logits(&whole), last_logits(&cut));
    assert_eq!(
        std::fs::read_to_string(whole.join("eval.csv")).unwrap(),
        std::fs::read_to_string(cut.join("eval.csv")).unwrap()
    );
    whole
}

/// Runs `spec` (of `max_steps` steps, evaluating every 20) whole as `experiment.name=whole`,
/// and as `cut`: interrupted with SIGINT after its third evaluation, then resumed. Returns
/// both run directories.
pub(crate) fn interrupted_and_resumed(
    ws: &Workspace,
    spec: &str,
    max_steps: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    ws.write("long.toml", spec);
    let whole = ws.run_ok("long.toml", &["experiment.name=whole"]);

    let child = ws
        .process()
        .args(["run", "long.toml", "experiment.name=cut"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let found = std::fs::read_dir(ws.path().join("experiments/cut"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("metrics.csv"))
            .filter(|m| std::fs::read_to_string(m).is_ok_and(|t| t.lines().count() >= 4));
        if let Some(m) = found {
            break m;
        }
        assert!(Instant::now() < deadline, "the run never got going");
        std::thread::sleep(Duration::from_millis(20));
    };
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let cut = metrics.parent().unwrap().to_path_buf();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("runner resume"));
    let summary = std::fs::read_to_string(cut.join("summary.json")).unwrap();
    assert!(summary.contains("\"interrupted\""), "{summary}");
    if summary.contains(&format!("\"steps\": {max_steps}")) {
        panic!("the signal came too late to test anything; the run had finished");
    }

    ws.runner()
        .args(["resume", cut.to_str().unwrap()])
        .assert()
        .success();
    (whole, cut)
}

#[test]
fn resume_falls_back_to_the_best_checkpoint_when_last_is_damaged() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &["train.budget=\"1min\""]);
    std::fs::write(run.join("checkpoints/last/model.bpk"), b"garbage").unwrap();
    ws.runner()
        .args([
            "resume",
            run.to_str().unwrap(),
            "--budget",
            "10s",
            "train.max_steps=24",
        ])
        .assert()
        .code(2); // resume takes no overrides: clap refuses the extra argument
    ws.runner()
        .args(["resume", run.to_str().unwrap(), "--budget", "10s"])
        .assert()
        .success()
        .stderr(contains("resuming from checkpoints/best"));
    std::fs::write(run.join("checkpoints/best/state.json"), b"{").unwrap();
    std::fs::write(run.join("checkpoints/last/state.json"), b"{").unwrap();
    ws.runner()
        .args(["resume", run.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("state.json").and(contains("panicked").not()));
}

#[test]
fn continued_training_checks_architecture_and_vocabulary() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let base = ws.run_ok("tiny.toml", &[]);
    let from = format!("model.init_from=\"{}\"", base.display());
    ws.run_ok(
        "tiny.toml",
        &[&from, "data.max_len=24", "experiment.name=harder"],
    );
    ws.runner()
        .args(["run", "tiny.toml", &from, "model.arch=lstm"])
        .assert()
        .code(2)
        .stderr(
            contains("model.init_from")
                .and(contains("gru"))
                .and(contains("lstm")),
        );
    ws.runner()
        .args(["run", "tiny.toml", &from, "data.pairs=[\"()\"]"])
        .assert()
        .code(2)
        .stderr(contains("model.init_from").and(contains("pairs")));
    let runs_before = std::fs::read_dir(ws.path().join("experiments/tiny"))
        .unwrap()
        .count();
    ws.runner()
        .args(["run", "tiny.toml", &from, "model.d_hidden=32"])
        .assert()
        .code(2)
        .stderr(
            contains("model.d_hidden 16 -> 32")
                .and(contains("model.init_from"))
                .and(contains("panicked").not()),
        );
    // Refused before the run directory or its dataset was written.
    let runs_after = std::fs::read_dir(ws.path().join("experiments/tiny"))
        .unwrap()
        .count();
    assert_eq!(runs_before, runs_after);
}

#[test]
fn damaged_files_are_named() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    std::fs::write(run.join("summary.json"), b"{\"name\": ").unwrap();
    ws.runner()
        .args(["compare", run.to_str().unwrap()])
        .assert()
        .success()
        .stderr(contains("summary.json"));
    let spec = format!(
        "{TINY}\n[sweep]\ntrials = 1\n[sweep.space]\n\"train.lr\" = {{ float = [1e-3, 1e-2] }}\n"
    );
    ws.write("s.toml", &spec);
    ws.runner().args(["sweep", "s.toml"]).assert().success();
    let db = ws.path().join("experiments/s/study.db");
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&db, &bytes[..bytes.len().min(100)]).unwrap();
    let _ = std::fs::remove_file(ws.path().join("experiments/s/study.db-wal"));
    ws.runner()
        .args(["study", "show", "experiments/s"])
        .assert()
        .code(2)
        .stderr(contains("study.db").and(contains("panicked").not()));
}

#[test]
fn an_unwritable_output_directory_fails_fast_with_its_path() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    ws.write("blocker", "a file where a directory should be");
    ws.runner()
        .args(["run", "tiny.toml", "experiment.out_dir=\"blocker/runs\""])
        .assert()
        .code(1)
        .stderr(contains("blocker/runs").and(contains("panicked").not()));
}

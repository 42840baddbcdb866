//! `runner sweep` through the binary: a tiny study end to end, resume, a killed worker,
//! two processes on one study, a grid, diverging trials, and bad spaces.

use crate::common::{Workspace, TINY};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use std::path::Path;
use std::time::{Duration, Instant};

fn search(space: &str, sweep: &str) -> String {
    format!("{TINY}\n[sweep]\n{sweep}\n[sweep.space]\n{space}\n")
}

const SPACE: &str = r#""train.lr" = { float = [1e-3, 3e-2], log = true }
"model.d_hidden" = { int = [8, 24] }
"#;

/// (number, state, attempts) of each row of trials.csv.
fn trials(study: &Path) -> Vec<(u64, String, u32)> {
    let text = std::fs::read_to_string(study.join("trials.csv")).expect("trials.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (n, s, a) = (col("number"), col("state"), col("attempts"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[n].parse().unwrap(),
                f[s].to_string(),
                f[a].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_tiny_study_runs_resumes_and_its_best_trial_runs() {
    let ws = Workspace::new();
    ws.write("s.toml", &search(SPACE, "trials = 3\nsampler = \"random\""));
    ws.runner()
        .args(["sweep", "s.toml"])
        .assert()
        .success()
        .stdout(contains("3 trials"));
    let study = ws.path().join("experiments/s");
    assert_eq!(trials(&study).len(), 3);
    for n in 0..3 {
        assert!(study.join(format!("trials/{n}/summary.json")).is_file());
    }
    // Resuming with a larger total continues the numbering.
    ws.runner()
        .args(["sweep", "s.toml", "sweep.trials=5"])
        .assert()
        .success();
    let numbers: Vec<u64> = trials(&study).iter().map(|t| t.0).collect();
    assert_eq!(numbers, vec![0, 1, 2, 3, 4]);
    // Nothing left to do: a third start runs no trial.
    ws.runner()
        .args(["sweep", "s.toml", "sweep.trials=5"])
        .assert()
        .success();
    assert_eq!(trials(&study).len(), 5);

    // `study best` prints the best trial's spec, runnable as it is; `--path` writes it.
    let out = ws
        .runner()
        .args(["study", "best", "experiments/s"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let best = ws.write("best.toml", &String::from_utf8(out.stdout).unwrap());
    ws.runner().arg("run").arg(&best).assert().success();
    let out = ws
        .runner()
        .args(["study", "best", "experiments/s", "--path"])
        .output()
        .unwrap();
    let path = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(ws.path().join(path.trim())).unwrap(),
        std::fs::read_to_string(&best).unwrap()
    );
    ws.runner()
        .args(["study", "show", "experiments/s"])
        .assert()
        .success()
        .stdout(contains("5 complete").and(contains("best: trial")));
}

#[test]
fn a_changed_space_is_refused_on_resume_unless_allowed() {
    let ws = Workspace::new();
    ws.write("s.toml", &search(SPACE, "trials = 1"));
    ws.runner().args(["sweep", "s.toml"]).assert().success();
    let other = SPACE.replace("[8, 24]", "[8, 32]");
    ws.write("s.toml", &search(&other, "trials = 2"));
    ws.runner()
        .args(["sweep", "s.toml"])
        .assert()
        .code(2)
        .stderr(contains("sweep.space").and(contains("--allow-space-change")));
    ws.runner()
        .args(["sweep", "s.toml", "--allow-space-change"])
        .assert()
        .success();
    assert_eq!(trials(&ws.path().join("experiments/s")).len(), 2);
}

#[test]
fn a_grid_runs_each_point_once_with_two_jobs() {
    let ws = Workspace::new();
    let space = r#""model.n_layers" = { int = [1, 3] }
"train.batch_size" = { choice = [8, 16] }
"train.lr" = { float = [1e-3, 1e-2], log = true, steps = 2 }
"#;
    ws.write("g.toml", &search(space, "trials = 12\nsampler = \"grid\""));
    ws.runner()
        .args(["sweep", "g.toml", "--jobs", "2"])
        .assert()
        .success();
    let study = ws.path().join("experiments/g");
    let rows = trials(&study);
    assert_eq!(rows.len(), 12);
    let text = std::fs::read_to_string(study.join("trials.csv")).unwrap();
    let points: std::collections::HashSet<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(2).take(3).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(points.len(), 12, "a grid point ran twice:\n{text}");
}

#[test]
fn diverging_trials_fail_and_the_study_completes() {
    let ws = Workspace::new();
    let space = r#""train.lr" = { choice = [1e-2, 1e4] }"#;
    ws.write(
        "d.toml",
        &search(space, "trials = 4\nsampler = \"grid\"").replace(
            "budget = \"2min\"",
            "budget = \"2min\"\ngrad_clip = 0.0\nwarmup_steps = 0",
        ),
    );
    ws.runner()
        .args(["sweep", "d.toml", "sweep.trials=2"])
        .assert()
        .success();
    let rows = trials(&ws.path().join("experiments/d"));
    let states: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(states, vec!["complete", "failed"]);
    let csv = std::fs::read_to_string(ws.path().join("experiments/d/trials.csv")).unwrap();
    assert!(csv.contains("diverged"), "{csv}");
}

#[test]
fn bad_spaces_are_refused_before_anything_runs() {
    let ws = Workspace::new();
    ws.write(
        "a.toml",
        &search("\"model.d_hiden\" = { int = [8, 16] }", "trials = 2"),
    );
    ws.runner()
        .args(["sweep", "a.toml"])
        .assert()
        .code(2)
        .stderr(contains("model.d_hiden"));
    ws.write(
        "b.toml",
        &search("\"model.arch\" = { int = [1, 2] }", "trials = 2"),
    );
    ws.runner()
        .args(["sweep", "b.toml"])
        .assert()
        .code(2)
        .stderr(contains("model.arch"));
    ws.write(
        "c.toml",
        &search(
            "\"train.lr\" = { float = [1e-3, 1e-2], lg = true }",
            "trials = 2",
        ),
    );
    ws.runner()
        .args(["sweep", "c.toml"])
        .assert()
        .code(2)
        .stderr(contains("lg"));
    assert!(
        !ws.path().join("experiments").exists(),
        "a refused sweep wrote files"
    );
    ws.write("d.toml", &search(SPACE, "trials = 4"));
    ws.runner()
        .args(["sweep", "d.toml", "--dry-run"])
        .assert()
        .success()
        .stdout(contains("train.lr").and(contains("trials: 4")));
    assert!(
        !ws.path().join("experiments").exists(),
        "a dry run wrote files"
    );
}

#[test]
fn two_processes_share_one_study_without_duplicates() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &search(SPACE, "trials = 10\nsampler = \"random\""),
    );
    let spawn = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
            .current_dir(ws.path())
            .args(["sweep", "p.toml"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("locked"), "{stderr}");
    }
    let numbers: Vec<u64> = trials(&ws.path().join("experiments/p"))
        .iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(numbers, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_trial_killed_mid_run_is_rerun_on_resume() {
    let ws = Workspace::new();
    // Long enough per trial to be caught running: many steps, evaluated often.
    let slow = search(SPACE, "trials = 2\nsampler = \"random\"")
        .replace("max_steps = 12", "max_steps = 100000")
        .replace("budget = \"2min\"", "budget = \"4s\"");
    ws.write("k.toml", &slow);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(ws.path())
        .args(["sweep", "k.toml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = ws.path().join("experiments/k/trials/0/metrics.csv");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metrics.exists(), "trial 0 never started");
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    ws.runner().args(["sweep", "k.toml"]).assert().success();
    let rows = trials(&ws.path().join("experiments/k"));
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        (0, "complete".to_string(), 2),
        "trial 0 re-run once"
    );
    assert_eq!(rows[1].1, "complete");
}

/// A time-to-target study scores each trial by when its validation first reached
/// `train.target_exact` (read back from its own metrics.csv), or by the budget plus the
/// shortfall when it never did; a pruner is refused with this objective.
#[test]
fn time_to_target_scores_each_trial_from_its_own_curve() {
    let ws = Workspace::new();
    let sweep = "trials = 2\nsampler = \"random\"\nobjective = \"time_to_target\"";
    ws.write("s.toml", &search(SPACE, sweep));
    ws.runner()
        .args(["sweep", "s.toml"])
        .assert()
        .code(2)
        .stderr(contains("sweep.pruner"));
    ws.runner()
        .args([
            "sweep",
            "s.toml",
            "sweep.pruner=none",
            "train.target_exact=0.02",
        ])
        .assert()
        .success();
    let study = ws.path().join("experiments/s");
    let text = std::fs::read_to_string(study.join("trials.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let value_col = header.iter().position(|h| *h == "time_to_target").unwrap();
    for (n, line) in lines.enumerate() {
        let value: f64 = line.split(',').nth(value_col).unwrap().parse().unwrap();
        let metrics = std::fs::read_to_string(study.join(format!("trials/{n}/metrics.csv")));
        let metrics = metrics.unwrap();
        let mut lines = metrics.lines();
        let columns: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = |name: &str| columns.iter().position(|c| *c == name).unwrap();
        let (elapsed, exact) = (col("elapsed_s"), col("val_exact"));
        let rows: Vec<(f64, f64)> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[elapsed].parse().unwrap(), f[exact].parse().unwrap())
            })
            .collect();
        let best = rows.iter().map(|r| r.1).fold(0.0, f64::max);
        let expected = match rows.iter().find(|r| r.1 >= 0.02) {
            Some(&(elapsed, _)) => elapsed,
            None => 120.0 * (1.0 + (0.02 - best)),
        };
        assert!(
            (value - expected).abs() < 1e-6,
            "trial {n}: {value} vs {expected}"
        );
    }
}

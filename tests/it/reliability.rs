//! The second reliability pass (docs/reliability.md): each test reproduces a defect found
//! by trying the runner as a hostile but fair user would, and pins what it does now.

use crate::common::{without_elapsed, Workspace, TINY};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn summary(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("valid summary")
}

fn file_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn resume_continues_the_run_it_resumes_whatever_the_environment_says() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    ws.runner()
        .args(["resume", run.to_str().unwrap(), "--budget", "20s"])
        .env("RUNNER_TRAIN__MAX_STEPS", "40")
        .env("RUNNER_TRAIN__LR", "-1")
        .assert()
        .success()
        .stderr(contains("RUNNER_TRAIN__LR").and(contains("ignored")));
    // max_steps stayed 12: at most the one step a resume always takes.
    let steps = summary(&run)["steps"].as_u64().unwrap();
    assert!(steps < 20, "the environment moved max_steps: {steps} steps");
    let log = std::fs::read_to_string(run.join("run.log")).unwrap();
    assert!(log.contains("budget given by --budget"), "{log}");
}

#[test]
fn foreign_runner_variables_are_left_alone_and_documented_ones_read_as_toml() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let out = ws
        .runner()
        .args(["run", "tiny.toml"])
        .env("RUNNER_TEMP", "/tmp")
        .env("RUNNER_OS", "Linux")
        .env("RUNNER_ARCH", "X64")
        .env("RUNNER_TRAIN__LR", "1e-3")
        .output()
        .unwrap();
    let run = ws.run_dir_of(&out);
    let resolved = std::fs::read_to_string(run.join("resolved.toml")).unwrap();
    assert!(resolved.contains("lr = 0.001"), "{resolved}");
    ws.runner()
        .args(["run", "tiny.toml"])
        .env("RUNNER_TRAIN__LR", "-1")
        .assert()
        .code(2)
        .stderr(contains("environment variable RUNNER_TRAIN__LR").and(contains("train.lr")));
}

fn sweep_two_trials(ws: &Workspace) -> std::path::PathBuf {
    let spec = format!(
        "{TINY}\n[sweep]\ntrials = 2\nsampler = \"random\"\n[sweep.space]\n\"train.lr\" = {{ float = [1e-3, 1e-2] }}\n"
    );
    ws.write("s.toml", &spec);
    ws.runner().args(["sweep", "s.toml"]).assert().success();
    ws.path().join("experiments/s")
}

#[test]
fn an_emptied_or_foreign_study_db_is_never_written_and_trials_are_never_overwritten() {
    let ws = Workspace::new();
    let study = sweep_two_trials(&ws);
    let db = study.join("study.db");
    for extra in ["study.db-wal", "study.db-shm"] {
        let _ = std::fs::remove_file(study.join(extra));
    }
    let trials_before = file_tree(&study.join("trials"));

    // Zero length: reading leaves it so, a sweep refuses to start over the old trials.
    std::fs::write(&db, b"").unwrap();
    ws.runner()
        .args(["study", "show", "experiments/s"])
        .assert()
        .code(2)
        .stderr(contains("not a study database"));
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    ws.runner()
        .args(["sweep", "s.toml"])
        .assert()
        .code(2)
        .stderr(contains("does not know").and(contains("0, 1")));
    assert_eq!(file_tree(&study.join("trials")), trials_before);

    // Another program's database: neither read nor sweep changes a byte of it.
    std::fs::remove_file(&db).unwrap();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    let foreign = std::fs::read(&db).unwrap();
    for args in [
        &["study", "show", "experiments/s"][..],
        &["sweep", "s.toml"][..],
    ] {
        ws.runner()
            .args(args)
            .assert()
            .code(2)
            .stderr(contains("not a study database").and(contains("notes")));
        assert_eq!(
            std::fs::read(&db).unwrap(),
            foreign,
            "{args:?} wrote into it"
        );
    }
    assert_eq!(file_tree(&study.join("trials")), trials_before);
}

/// Diverges within a few steps, after a first evaluation at step 1.
const DIVERGING: [&str; 6] = [
    "train.lr=1e4",
    "train.warmup_steps=0",
    "train.grad_clip=0",
    "train.eval_every=1",
    "train.max_steps=300",
    "model.d_hidden=64",
];

#[test]
fn a_diverged_run_keeps_a_usable_last_checkpoint_and_resume_keeps_the_test_score() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &DIVERGING);
    assert_eq!(summary(&run)["status"], "diverged");
    let state = std::fs::read_to_string(run.join("checkpoints/last/state.json")).unwrap();
    assert!(state.contains("\"val_exact\": null"), "{state}");
    ws.runner()
        .args([
            "eval",
            run.to_str().unwrap(),
            "--checkpoint",
            "last",
            "--samples",
            "10",
        ])
        .assert()
        .success()
        .stdout(contains("exact: "));
    // The resume diverges again without a better evaluation: the best checkpoint's test
    // score must still be in the summary and printed.
    ws.runner()
        .args(["resume", run.to_str().unwrap(), "--budget", "10s"])
        .assert()
        .success()
        .stdout(contains("test_exact: "));
    let after = summary(&run);
    assert_eq!(after["status"], "diverged");
    assert!(after["test_exact"].is_number(), "{after}");
}

#[test]
fn a_damaged_optimiser_state_falls_back_to_the_best_checkpoint() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    std::fs::write(run.join("checkpoints/last/optim.bpk"), b"garbage").unwrap();
    ws.runner()
        .args(["resume", run.to_str().unwrap(), "--budget", "10s"])
        .assert()
        .success()
        .stderr(contains("resuming from checkpoints/best"));
}

#[test]
fn a_run_killed_before_its_first_evaluation_resumes_from_step_zero() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    let reference = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    // What a kill during the first steps leaves: the spec, the dataset, a log, and a
    // temporary file of an interrupted write.
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    for f in ["metrics.csv", "summary.json", "eval.csv", "report.txt"] {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    std::fs::write(run.join("dataset/.tmp-AbC123"), b"half a file").unwrap();
    ws.runner()
        .args(["resume", run.to_str().unwrap()])
        .assert()
        .success()
        .stderr(contains("step 0"));
    assert!(!run.join("dataset/.tmp-AbC123").exists());
    let again = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(without_elapsed(&again), without_elapsed(&reference));
}

#[test]
fn a_second_process_cannot_train_in_a_locked_run() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    // No step limit: a resume then trains for the whole --budget it is given.
    let run = ws.run_ok("tiny.toml", &["train.max_steps=0", "train.budget=\"2s\""]);
    let mut first = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(ws.path())
        .args(["resume", run.to_str().unwrap(), "--budget", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(run.join("run.log")).unwrap_or_default();
        if log.matches(" resume").count() >= 1 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = ws
        .runner()
        .args(["resume", run.to_str().unwrap(), "--budget", "5s"])
        .output()
        .unwrap();
    let still_running = first.try_wait().unwrap().is_none();
    let _ = first.kill();
    let _ = first.wait();
    if still_running {
        assert_eq!(second.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(
            stderr.contains("another runner process") && stderr.contains(&first.id().to_string()),
            "{stderr}"
        );
    } else {
        panic!("the first resume ended before the second started; the test proves nothing");
    }
}

#[cfg(unix)]
#[test]
fn outputs_honour_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let runner = assert_cmd::cargo::cargo_bin("runner");
    let out = Command::new("sh")
        .current_dir(ws.path())
        .arg("-c")
        .arg(format!(
            "umask 022 && exec '{}' run tiny.toml",
            runner.display()
        ))
        .output()
        .unwrap();
    let run = ws.run_dir_of(&out);
    for file in [
        "summary.json",
        "metrics.csv",
        "eval.csv",
        "resolved.toml",
        "dataset/train.jsonl",
        "checkpoints/best/state.json",
    ] {
        let mode = std::fs::metadata(run.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644, "{file}: {mode:o}");
    }
}

#[test]
fn eval_inputs_out_of_bounds_exit_2() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    let run = run.to_str().unwrap();
    ws.write("empty.jsonl", "");
    ws.runner()
        .args(["eval", run, "--data", "empty.jsonl"])
        .assert()
        .code(2)
        .stderr(contains("empty.jsonl").and(contains("no valid examples")));
    let long = format!(
        "{{\"input\": \"((\", \"output\": \"))\"}}\n{{\"input\": \"{}\", \"output\": \"\"}}\n",
        "(".repeat(200_000)
    );
    ws.write("long.jsonl", &long);
    ws.runner()
        .args(["eval", run, "--data", "long.jsonl"])
        .assert()
        .code(2)
        .stderr(contains("long.jsonl:2").and(contains("65536 bytes")));
    ws.runner()
        .args(["eval", run, "--samples", "100000000000"])
        .assert()
        .code(2)
        .stderr(contains("--samples").and(contains("GiB")));
    for (dir, says) in [
        ("nowhere", "no such run directory"),
        ("experiments", "not a run directory"),
    ] {
        for cmd in ["eval", "predict", "resume"] {
            let mut c = ws.runner();
            c.args([cmd, dir]);
            if cmd == "predict" {
                c.arg("((");
            }
            c.assert().code(2).stderr(contains(says));
        }
    }
}

#[test]
fn compare_refuses_a_plot_it_cannot_write_before_printing_anything() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let run = ws.run_ok("tiny.toml", &[]);
    let run = run.to_str().unwrap();
    ws.runner()
        .args(["compare", run, "--plot", "out.jpg"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(contains(".png or .svg"));
    ws.runner()
        .args(["compare", run, "--plot", "no/such/dir/x.png"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(contains("does not exist"));
    assert!(!ws.path().join("no").exists());
}

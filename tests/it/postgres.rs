//! Studies in a real PostgreSQL server (`scripts/postgres.sh start`; CI starts one and
//! requires these tests): workers in separate directories ("machines") sharing one study,
//! a killed worker's trial taken over by another host after the grace period, a server
//! restart mid-sweep, copies between storages, and bad storages refused with exit code 2.

use crate::common::{Workspace, TINY};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time talks to the server: the restart test stops it.
static SERVER: Mutex<()> = Mutex::new(());

/// The test server's URL, or None (the test is skipped, and says why) unless CI requires it.
fn server() -> Option<String> {
    match std::env::var("RUNNER_TEST_POSTGRES") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("RUNNER_REQUIRE_POSTGRES").is_some() => {
            panic!("RUNNER_REQUIRE_POSTGRES is set but RUNNER_TEST_POSTGRES is not")
        }
        Err(_) => {
            eprintln!("skipped: no PostgreSQL server (`eval \"$(scripts/postgres.sh start)\"`)");
            None
        }
    }
}

/// A study name no earlier run used: studies stay in the test database.
fn fresh_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}_{}_{nanos}", std::process::id())
}

fn study_spec(name: &str, sweep: &str, space: &str) -> String {
    format!("[experiment]\nname = \"{name}\"\n{TINY}\n[sweep]\n{sweep}\n[sweep.space]\n{space}\n")
}

/// 60 grid points, each a tiny trial.
const GRID: &str = r#""train.lr" = { float = [1e-3, 3e-2], log = true, steps = 10 }
"model.d_hidden" = { choice = [8, 12, 16] }
"train.batch_size" = { choice = [8, 16] }
"#;

fn sweep_process(ws: &Workspace, args: &[&str]) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(ws.path())
        .args(["sweep", "s.toml"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn succeeded(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.to_lowercase().contains("locked"), "{stderr}");
    stderr
}

/// (number, state, attempts, grid point, host, dir) of each trial, from `trials.csv`.
struct Row {
    number: u64,
    state: String,
    attempts: u32,
    point: String,
    host: String,
    dir: String,
}

fn rows(ws: &Workspace, name: &str) -> Vec<Row> {
    let path = ws.path().join("experiments").join(name).join("trials.csv");
    let mut reader = csv::Reader::from_path(&path).expect("trials.csv");
    let header = reader.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let params: Vec<usize> = ["model.d_hidden", "train.batch_size", "train.lr"]
        .iter()
        .filter_map(|p| header.iter().position(|h| h == *p))
        .collect();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            Row {
                number: r[col("number")].parse().unwrap(),
                state: r[col("state")].to_string(),
                attempts: r[col("attempts")].parse().unwrap(),
                point: params.iter().map(|&i| &r[i]).collect::<Vec<_>>().join(","),
                host: r[col("host")].to_string(),
                dir: r[col("dir")].to_string(),
            }
        })
        .collect()
}

/// "best: trial N with val_exact = X" from `study show`.
fn best_line(show: &str) -> String {
    show.lines()
        .find(|l| l.starts_with("best:"))
        .unwrap_or_else(|| panic!("no best line in:\n{show}"))
        .split(" (")
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn three_machines_share_one_grid_study_and_agree_with_one_worker() {
    let Some(url) = server() else { return };
    let _server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let name = fresh_name("grid");
    let spec = study_spec(
        &name,
        "trials = 60\nsampler = \"grid\"\npruner = \"none\"",
        GRID,
    );
    // Three "machines": nothing shared but the database.
    let machines: Vec<Workspace> = (0..3).map(|_| Workspace::new()).collect();
    for ws in &machines {
        ws.write("s.toml", &spec);
    }
    let workers: Vec<_> = machines
        .iter()
        .map(|ws| sweep_process(ws, &["--storage", &url]))
        .collect();
    // Read every worker's stderr at once: a full pipe would stall its writer.
    let outputs: Vec<_> = workers
        .into_iter()
        .map(|w| std::thread::spawn(move || w.wait_with_output().unwrap()))
        .collect();
    for out in outputs {
        succeeded(out.join().unwrap());
    }
    // A fourth machine that ran nothing reports the whole study (trials.csv included):
    // every trial ran once, on one machine, and that machine has its run directory.
    let viewer = Workspace::new();
    viewer
        .runner()
        .args([
            "study",
            "report",
            &format!("experiments/{name}"),
            "--storage",
            &url,
        ])
        .assert()
        .success();
    let all = rows(&viewer, &name);
    assert_eq!(all.len(), 60);
    let mut numbers = Vec::new();
    let points: HashSet<String> = all.iter().map(|r| r.point.clone()).collect();
    assert_eq!(points.len(), 60, "no grid point ran twice");
    for r in &all {
        assert_eq!(
            (r.state.as_str(), r.attempts),
            ("complete", 1),
            "trial {}",
            r.number
        );
        let ran_on: Vec<usize> = (0..3)
            .filter(|&k| r.dir.starts_with(&*machines[k].path().to_string_lossy()))
            .collect();
        assert_eq!(ran_on.len(), 1, "trial {} in {}", r.number, r.dir);
        assert!(std::path::Path::new(&r.dir).join("summary.json").is_file());
        numbers.push(r.number);
    }
    assert_eq!(numbers, (0..60).collect::<Vec<_>>());
    let per_machine: Vec<usize> = machines
        .iter()
        .map(|ws| {
            all.iter()
                .filter(|r| r.dir.starts_with(&*ws.path().to_string_lossy()))
                .count()
        })
        .collect();
    eprintln!("trials per machine: {per_machine:?}");

    // It shows the same best trial as one worker alone on SQLite.
    let shown = viewer
        .runner()
        .args([
            "study",
            "show",
            &format!("experiments/{name}"),
            "--storage",
            &url,
        ])
        .output()
        .unwrap();
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains("60 trials: 60 complete"), "{shown}");
    let alone = Workspace::new();
    alone.write("s.toml", &spec);
    succeeded(sweep_process(&alone, &[]).wait_with_output().unwrap());
    let out = alone
        .runner()
        .args(["study", "show", &format!("experiments/{name}")])
        .output()
        .unwrap();
    assert_eq!(
        best_line(&shown),
        best_line(&String::from_utf8(out.stdout).unwrap())
    );
    // Its best spec prints from the database, runnable where no trial ran.
    let best = viewer
        .runner()
        .args([
            "study",
            "best",
            &format!("experiments/{name}"),
            "--storage",
            &url,
        ])
        .output()
        .unwrap();
    assert!(best.status.success());
    let file = viewer.write("best.toml", &String::from_utf8(best.stdout).unwrap());
    viewer.runner().arg("run").arg(file).assert().success();
}

/// Can this machine give a process a host name of its own (root, `unshare --uts`)?
fn other_host_available() -> bool {
    Command::new("unshare")
        .args(["--uts", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_killed_workers_trial_is_rerun_by_another_host_after_the_grace_period() {
    let Some(url) = server() else { return };
    if !other_host_available() {
        eprintln!("skipped: `unshare --uts` is not allowed here, so there is no second host");
        return;
    }
    let _server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let name = fresh_name("killed");
    let spec = study_spec(
        &name,
        "trials = 2\nsampler = \"random\"\npruner = \"none\"\ngrace_period = \"3s\"",
        "\"train.lr\" = { float = [1e-3, 3e-2], log = true }",
    )
    .replace("max_steps = 12", "max_steps = 100000")
    .replace("budget = \"2min\"", "budget = \"5s\"");
    let (a, b) = (Workspace::new(), Workspace::new());
    a.write("s.toml", &spec);
    b.write("s.toml", &spec);
    let mut first = sweep_process(&a, &["--storage", &url]);
    let metrics = a
        .path()
        .join(format!("experiments/{name}/trials/0/metrics.csv"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(metrics.exists(), "trial 0 never started");
    first.kill().unwrap(); // SIGKILL: the trial stays `running`, its heartbeat stops
    first.wait().unwrap();
    // Host B: its own host name, so it cannot see that A's process is gone; only the
    // grace period tells it the trial is dead.
    let runner = assert_cmd::cargo::cargo_bin("runner");
    let out = Command::new("unshare")
        .args(["--uts", "sh", "-c"])
        .arg(format!(
            "hostname host-b && exec '{}' sweep s.toml --storage '{url}'",
            runner.display()
        ))
        .current_dir(b.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    succeeded(out);
    let all = rows(&b, &name);
    assert_eq!(all.len(), 2);
    let zero = &all[0];
    assert_eq!(
        (zero.state.as_str(), zero.attempts),
        ("complete", 2),
        "trial 0 re-run once"
    );
    assert_eq!(zero.host, "host-b");
    assert!(
        zero.dir.starts_with(&*b.path().to_string_lossy()),
        "{}",
        zero.dir
    );
    assert_eq!(all[1].state, "complete");
}

#[test]
fn workers_carry_on_when_the_server_restarts() {
    let Some(url) = server() else { return };
    let Ok(pg_dir) = std::env::var("RUNNER_PG_DIR") else {
        eprintln!("skipped: RUNNER_PG_DIR (from scripts/postgres.sh start) is not set");
        return;
    };
    let _server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let name = fresh_name("restart");
    let spec = study_spec(
        &name,
        "trials = 6\nsampler = \"random\"\npruner = \"none\"",
        "\"train.lr\" = { float = [1e-3, 3e-2], log = true }",
    )
    .replace("max_steps = 12", "max_steps = 100000")
    .replace("budget = \"2min\"", "budget = \"2s\"");
    let ws = Workspace::new();
    ws.write("s.toml", &spec);
    let sweep = sweep_process(&ws, &["--storage", &url, "--jobs", "2"]);
    let first = ws
        .path()
        .join(format!("experiments/{name}/trials/0/summary.json"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(first.exists(), "no trial finished");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/postgres.sh");
    let control = |what: &str| {
        let status = Command::new(script)
            .arg(what)
            .env("RUNNER_PG_DIR", &pg_dir)
            .status()
            .unwrap();
        assert!(status.success(), "postgres.sh {what}");
    };
    control("pause");
    std::thread::sleep(Duration::from_secs(4));
    control("resume");
    let stderr = succeeded(sweep.wait_with_output().unwrap());
    let worker_log =
        std::fs::read_to_string(ws.path().join(format!("experiments/{name}/worker-1.log")))
            .unwrap_or_default();
    assert!(
        format!("{stderr}{worker_log}").contains("reconnected to the study database"),
        "the outage went unnoticed: {stderr}\n{worker_log}"
    );
    // The last worker may have finished before the others wrote their outcomes.
    ws.runner()
        .args([
            "study",
            "report",
            &format!("experiments/{name}"),
            "--storage",
            &url,
        ])
        .assert()
        .success();
    let all = rows(&ws, &name);
    let numbers: Vec<u64> = all.iter().map(|r| r.number).collect();
    assert_eq!(numbers, (0..6).collect::<Vec<_>>(), "{stderr}");
    for r in &all {
        assert_eq!(
            (r.state.as_str(), r.attempts),
            ("complete", 1),
            "trial {}",
            r.number
        );
    }
}

#[test]
fn studies_copy_between_sqlite_and_postgres_both_ways() {
    let Some(url) = server() else { return };
    let _server = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let name = fresh_name("copy");
    let ws = Workspace::new();
    ws.write(
        "s.toml",
        &study_spec(
            &name,
            "trials = 4\nsampler = \"random\"",
            "\"train.lr\" = { float = [1e-3, 3e-2], log = true }",
        ),
    );
    succeeded(sweep_process(&ws, &[]).wait_with_output().unwrap());
    let dir = format!("experiments/{name}");
    let show = |args: &[&str]| {
        let out = ws
            .runner()
            .args(["study", "show"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let here = show(&[&dir]);
    ws.runner()
        .args(["study", "copy", &dir, &url])
        .assert()
        .success()
        .stdout(contains("4 trials"));
    let there = show(&[&dir, "--storage", &url]);
    assert_eq!(best_line(&here), best_line(&there));
    // A second copy would mix two studies: refused, exit 2.
    ws.runner()
        .args(["study", "copy", &dir, &url])
        .assert()
        .code(2)
        .stderr(contains("already holds a study"));
    // And back, into another directory of the same name.
    let back = format!("home/{name}");
    ws.runner()
        .args(["study", "copy", &url, &back])
        .assert()
        .success();
    assert_eq!(best_line(&show(&[&back])), best_line(&here));
    assert!(show(&[&back]).contains("4 trials: 4 complete"));
}

#[test]
fn bad_storages_are_refused_with_exit_code_2_and_no_password_shown() {
    let Some(url) = server() else { return };
    let ws = Workspace::new();
    let name = fresh_name("bad");
    ws.write(
        "s.toml",
        &study_spec(
            &name,
            "trials = 1",
            "\"train.lr\" = { float = [1e-3, 3e-2] }",
        ),
    );
    let refuse = |args: &[&str], envs: &[(&str, &str)], says: &str| {
        ws.runner()
            .args(args)
            .envs(envs.iter().copied())
            .assert()
            .code(2)
            .stderr(contains(says).and(contains("hunter2").not()));
    };
    let with_password = url.replacen("postgres@", "postgres:hunter2@", 1);
    refuse(
        &["sweep", "s.toml", "--storage", &with_password],
        &[],
        "PGPASSWORD",
    );
    refuse(
        &["sweep", "s.toml", "--storage", "mysql://x@y/z"],
        &[],
        "sweep.storage",
    );
    refuse(
        &["sweep", "s.toml"],
        &[(
            "RUNNER_SWEEP__STORAGE",
            "postgresql://x@127.0.0.1:notaport/z",
        )],
        "cannot read",
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let gone = format!("postgresql://ana@127.0.0.1:{port}/studies");
    refuse(
        &["sweep", "s.toml", "--storage", &gone],
        &[],
        &format!("127.0.0.1:{port}"),
    );
    if let Ok(pw_url) = std::env::var("RUNNER_TEST_POSTGRES_PASSWORD_URL") {
        refuse(
            &["sweep", "s.toml", "--storage", &pw_url],
            &[("PGPASSWORD", "hunter2")],
            "password authentication failed",
        );
    }
    refuse(
        &[
            "study",
            "show",
            "experiments/nothing_here",
            "--storage",
            &url,
        ],
        &[],
        "no study called 'nothing_here'",
    );
    assert!(!ws
        .path()
        .join("experiments")
        .join(&name)
        .join("trials")
        .read_dir()
        .is_ok_and(|mut d| d.next().is_some()));
}

//! `runner serve` over real HTTP: every view answers 200 with the runs it should show, the
//! JSON endpoints answer, paths that leave the directory get 403/404, and a run that is
//! being written while served never yields a 500.

use crate::common::{Workspace, TINY};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// A running `runner serve` on a free port; killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(ws: &Workspace) -> Self {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("runner"))
            .current_dir(ws.path())
            .args(["serve", "--dir", "experiments", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Self { child, address }
    }

    /// The status and body of GET `path`, sent as it is (no normalisation of `..`).
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    fn ok(&self, path: &str) -> String {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name/run-id` of a run directory.
fn key(run: &std::path::Path) -> String {
    let id = run.file_name().unwrap().to_string_lossy();
    let name = run.parent().unwrap().file_name().unwrap().to_string_lossy();
    format!("{name}/{id}")
}

#[test]
fn every_view_answers_with_its_runs_and_nothing_leaves_the_directory() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let gru = ws.run_ok("tiny.toml", &["experiment.name=a_gru"]);
    let gpt = ws.run_ok("tiny.toml", &["experiment.name=b_gpt", "model.arch=gpt"]);
    ws.write(
        "s.toml",
        &format!("{TINY}\n[sweep]\ntrials = 2\nsampler = \"random\"\n[sweep.space]\n\"train.lr\" = {{ float = [1e-3, 3e-2], log = true }}\n"),
    );
    ws.runner().args(["sweep", "s.toml"]).assert().success();
    let files_before = files(&ws);
    let server = Server::start(&ws);

    let runs = server.ok("/");
    assert!(
        runs.contains(&key(&gru)) && runs.contains(&key(&gpt)),
        "{runs}"
    );
    assert!(runs.contains("/study/s"), "{runs}");
    let filtered = server.ok("/?q=b_gpt");
    assert!(filtered.contains(&key(&gpt)) && !filtered.contains(&key(&gru)));
    let page = server.ok(&format!("/run/{}", key(&gpt)));
    assert!(page.contains("resolved.toml") && page.contains("training_history.png"));
    let metrics = server.ok(&format!("/api/run/{}/metrics", key(&gpt)));
    let value: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    assert_eq!(value["rows"].as_array().unwrap().len(), 3, "{metrics}");
    assert_eq!(value["done"], true);
    let both = format!(
        "/compare?run={}&run={}",
        key(&gru).replace('/', "%2F"),
        key(&gpt)
    );
    let compare = server.ok(&both);
    assert!(compare.contains("model.arch"), "{compare}");
    let study = server.ok("/study/s");
    assert!(study.contains("complete"), "{study}");
    let api: serde_json::Value = serde_json::from_str(&server.ok("/api/study/s")).unwrap();
    assert_eq!(api["objective"], "val_exact");
    assert_eq!(api["points"].as_array().unwrap().len(), 2, "{api}");
    let png = server.get(&format!("/files/{}/training_history.png", key(&gru)));
    assert_eq!(png.0, 200);
    for asset in ["app.js", "uPlot.iife.min.js", "uPlot.min.css", "style.css"] {
        server.ok(&format!("/assets/{asset}"));
    }

    for path in [
        "/files/../tiny.toml",
        "/files/a_gru/../../tiny.toml",
        "/files//etc/passwd",
        "/files/%2e%2e/tiny.toml",
        "/run/../a_gru",
        "/study/..",
        "/api/run/a_gru/..%2F..%2Fx/metrics",
    ] {
        let (status, body) = server.get(path);
        assert!(status == 403 || status == 404, "{path}: {status} {body}");
        assert!(!body.contains("[data]"), "{path} leaked a file: {body}");
    }
    let (status, _) = server.get("/files/a_gru/nothing.png");
    assert_eq!(status, 404);
    assert_eq!(server.get("/compare?run=none%2Fx").0, 404);
    drop(server);
    assert_eq!(files(&ws), files_before, "serving wrote files");
}

/// Every file below the workspace and its contents, without SQLite's `-wal`/`-shm`
/// sidecars: a reader of a WAL database creates its shared-memory index (as `runner study
/// show` does), which is SQLite's bookkeeping, not a change to the study.
fn files(ws: &Workspace) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = ws
        .outputs(&[])
        .into_iter()
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.to_string_lossy();
            !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_run_being_written_while_served_never_gives_a_500() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    ws.run_ok("tiny.toml", &["experiment.name=first"]);
    let server = Server::start(&ws);
    let mut training = Command::new(assert_cmd::cargo::cargo_bin("runner"))
        .current_dir(ws.path())
        .args([
            "run",
            "tiny.toml",
            "experiment.name=live",
            "train.max_steps=400",
            "train.eval_every=2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen_rows = 0;
    let mut polls = 0;
    while training.try_wait().unwrap().is_none() && polls < 2000 {
        polls += 1;
        let (status, body) = server.get("/");
        assert_ne!(status, 500, "{body}");
        let Ok(entries) = std::fs::read_dir(ws.path().join("experiments/live")) else {
            continue;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            for path in [
                format!("/run/live/{id}"),
                format!("/api/run/live/{id}/metrics"),
            ] {
                let (status, body) = server.get(&path);
                assert!(status == 200 || status == 404, "{path}: {status} {body}");
                if status == 200 && path.contains("/api/") {
                    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
                    seen_rows = seen_rows.max(value["rows"].as_array().unwrap().len());
                }
            }
        }
    }
    assert!(training.wait().unwrap().success());
    assert!(
        seen_rows > 0,
        "never saw the live run's metrics ({polls} polls)"
    );
}

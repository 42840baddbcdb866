//! `runner compare`, `runner eval --suite` and `runner study report` through the binary.

use crate::common::{Workspace, TINY};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

#[test]
fn compare_prints_the_diff_and_writes_a_plot_and_stable_csv() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let gru = ws.run_ok("tiny.toml", &["experiment.name=a_gru"]);
    let gpt = ws.run_ok("tiny.toml", &["experiment.name=b_gpt", "model.arch=gpt"]);
    ws.run_ok(
        "tiny.toml",
        &["experiment.name=b_gpt", "model.arch=gpt", "train.lr=1e-2"],
    );
    assert!(gru.join("training_history.png").metadata().unwrap().len() > 1000);

    ws.runner()
        .args([
            "compare",
            gru.to_str().unwrap(),
            "experiments/b_gpt",
            "--plot",
            "curves.png",
        ])
        .assert()
        .success()
        .stdout(
            contains("model.arch")
                .and(contains("val exact @"))
                .and(contains("b_gpt/")),
        );
    let png = std::fs::read(ws.path().join("curves.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5000,
        "{} bytes",
        png.len()
    );

    let csv = |args: &[&str]| {
        let out = ws
            .runner()
            .args(["compare"])
            .args(args)
            .args(["--format", "csv"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let one = csv(&[gru.to_str().unwrap(), gpt.to_str().unwrap()]);
    let two = csv(&["experiments/b_gpt"]);
    let header = |s: &str| s.lines().next().unwrap().to_string();
    assert_eq!(header(&one), header(&two), "csv columns are fixed");
    assert_eq!(two.lines().count(), 3);

    // A malformed metrics file is named by path and line; the rest still prints.
    let metrics = gpt.join("metrics.csv");
    let text = std::fs::read_to_string(&metrics).unwrap();
    std::fs::write(&metrics, format!("{text}12,1,x,y\n")).unwrap();
    ws.runner()
        .args(["compare", gru.to_str().unwrap(), gpt.to_str().unwrap()])
        .assert()
        .success()
        .stderr(contains("metrics.csv:5"))
        .stdout(contains("a_gru/"));
}

#[test]
fn eval_suite_writes_per_set_and_breakdown_tables() {
    let ws = Workspace::new();
    ws.write("tiny.toml", TINY);
    let gpt = ws.run_ok("tiny.toml", &["model.arch=gpt"]);
    ws.runner()
        .args(["eval", gpt.to_str().unwrap(), "--suite", "--samples", "50"])
        .assert()
        .success()
        .stdout(contains("in_distribution").and(contains("n/a: every input needs more than")));
    let csv = std::fs::read_to_string(gpt.join("eval_suite.csv")).unwrap();
    assert!(csv.starts_with("set,breakdown,group,correct,total,exact,note"));
    assert!(csv.contains("answer length") && csv.contains("nesting depth"));
    assert!(gpt.join("eval_suite.md").is_file());
    ws.runner()
        .args(["compare", gpt.to_str().unwrap()])
        .assert()
        .success()
        .stdout(contains("suite: in_distribution"));
    assert!(gpt.join("eval_suite.png").is_file());
    assert!(std::fs::read_to_string(gpt.join("eval_suite.md"))
        .unwrap()
        .contains("eval_suite.png"));

    // Two runs' suites side by side: one line per run; a run without one is named.
    let gru = ws.run_ok("tiny.toml", &["experiment.name=b_gru"]);
    ws.runner()
        .args([
            "compare",
            gru.to_str().unwrap(),
            "--suite-plot",
            "suite.svg",
        ])
        .assert()
        .code(2)
        .stderr(contains("--suite-plot"));
    ws.runner()
        .args(["compare", gpt.to_str().unwrap(), gru.to_str().unwrap()])
        .args(["--suite-plot", "suite.svg"])
        .assert()
        .success()
        .stderr(contains("b_gru/").and(contains("no eval_suite.csv")));
    ws.runner()
        .args(["eval", gru.to_str().unwrap(), "--suite", "--samples", "50"])
        .assert()
        .success();
    ws.runner()
        .args(["compare", gpt.to_str().unwrap(), gru.to_str().unwrap()])
        .args(["--suite-plot", "suite.svg"])
        .assert()
        .success();
    let svg = std::fs::read_to_string(ws.path().join("suite.svg")).unwrap();
    assert!(svg.contains("exact match by nesting depth"), "{svg}");
    assert!(svg.contains("b_gru/") && svg.contains("tiny/"), "{svg}");
}

#[test]
fn study_report_writes_markdown_and_figures() {
    let ws = Workspace::new();
    let spec = format!(
        "{TINY}\n[sweep]\ntrials = 4\nsampler = \"random\"\n[sweep.space]\n\"train.lr\" = {{ float = [1e-3, 3e-2], log = true }}\n"
    );
    ws.write("s.toml", &spec);
    ws.runner().args(["sweep", "s.toml"]).assert().success();
    ws.runner()
        .args(["study", "report", "experiments/s"])
        .assert()
        .success();
    let md = std::fs::read_to_string(ws.path().join("experiments/s/report.md")).unwrap();
    assert!(
        md.contains("## Best trial") && md.contains("Parameter importance"),
        "{md}"
    );
    for png in ["best_so_far.png", "parallel.png"] {
        assert!(
            ws.path()
                .join("experiments/s")
                .join(png)
                .metadata()
                .unwrap()
                .len()
                > 1000
        );
    }
    ws.runner()
        .args(["compare", "experiments/s", "--format", "markdown"])
        .assert()
        .success()
        .stdout(contains("s#0").and(contains("s#3")));
}

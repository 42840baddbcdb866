//! Learning techniques, part two: compression. `runner quantize` writes an int8/int4
//! checkpoint that eval and predict read, smaller than the float one and answering like it.

use crate::common::{Workspace, TINY};
use predicates::str::contains;

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_quantised_model_is_smaller_and_answers_like_the_float_one() {
    let ws = Workspace::new();
    // Big enough that the weights outweigh the file's header, trained enough to give
    // varied answers, so that size and agreement mean something.
    ws.write(
        "q.toml",
        &TINY
            .replace("max_steps = 12", "max_steps = 150")
            .replace("d_hidden = 16", "d_hidden = 64"),
    );
    let run = ws.run_ok("q.toml", &[]);
    let run = run.to_str().unwrap();
    // int4 is no smaller than int8 on flex, which stores 4-bit values one per byte, and it
    // adds a scale per block of 32: so its bound is looser.
    for (scheme, max_ratio, min_agreement) in [("int8", 1.0 / 3.0, 0.95), ("int4", 0.4, 0.60)] {
        let report = json(
            &ws.runner()
                .args([
                    "quantize",
                    run,
                    "--scheme",
                    scheme,
                    "--samples",
                    "300",
                    "--json",
                ])
                .output()
                .unwrap(),
        );
        let (float, quant) = (
            report["file_bytes_float"].as_f64().unwrap(),
            report["file_bytes_quantized"].as_f64().unwrap(),
        );
        // f32 to i8: under a third of the size once headers and vectors are counted.
        assert!(
            quant < float * max_ratio,
            "{scheme}: {quant} vs {float} bytes"
        );
        let agreement = report["agreement"].as_f64().unwrap();
        assert!(
            agreement >= min_agreement,
            "{scheme}: agreement {agreement}"
        );
        assert!(report["matrices"].as_u64().unwrap() > 0);
        // eval reads the slot like any other checkpoint.
        let eval = json(
            &ws.runner()
                .args([
                    "eval",
                    run,
                    "--checkpoint",
                    scheme,
                    "--samples",
                    "300",
                    "--json",
                ])
                .output()
                .unwrap(),
        );
        assert_eq!(eval["exact"], report["exact_quantized"], "{scheme}");
    }
    // Quantising a quantised checkpoint is refused.
    ws.runner()
        .args(["quantize", run, "--checkpoint", "int8"])
        .assert()
        .code(2)
        .stderr(contains("already quantised"));
}

#[test]
fn pruning_reaches_the_sparsity_and_fine_tuning_keeps_it() {
    let ws = Workspace::new();
    ws.write(
        "p.toml",
        &TINY
            .replace("max_steps = 12", "max_steps = 60")
            .replace("d_hidden = 16", "d_hidden = 64"),
    );
    let run = ws.run_ok("p.toml", &[]);
    ws.runner()
        .arg("prune")
        .arg(&run)
        .args([
            "--sparsity",
            "0.5,0.8",
            "--finetune-steps",
            "30",
            "--samples",
            "100",
        ])
        .assert()
        .success()
        .stdout(contains("| 0.8 |"));
    let out = run.join("prune");
    assert!(out.join("prune.png").is_file() && out.join("prune.md").is_file());
    let mut reader = csv::Reader::from_path(out.join("prune.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let asked: f64 = row[0].parse().unwrap();
        let reached: f64 = row[1].parse().unwrap();
        let after: f64 = row[4].parse().unwrap();
        assert!(
            (reached - asked).abs() < 0.005,
            "asked {asked}, reached {reached}"
        );
        // Pruned weights stay at zero while the fine-tune trains the others.
        assert!(
            after >= reached - 1e-9,
            "asked {asked}: {reached} then {after}"
        );
        let tuned = std::path::Path::new(&row[5]);
        assert!(tuned.join("summary.json").is_file(), "{}", tuned.display());
    }
    ws.runner()
        .arg("prune")
        .arg(&run)
        .args(["--sparsity", "1.5"])
        .assert()
        .code(2)
        .stderr(contains("--sparsity"));
}

"""Optuna's own TPE driving `runner run`: one study of the sampler benchmark (docs/sweeps.md).

Reads the search space from a runner sweep spec ([sweep.space]), asks Optuna's TPESampler
for each trial's parameters, runs `runner run SPEC key=value ...` with them, reports every
row of the run's metrics.csv to Optuna as it appears, and stops the run (SIGINT) when
Optuna's MedianPruner says so. The trial's value is the run's best val_exact, as in a
runner study. Writes OUT/trials.csv (number, state, val_exact) like `runner sweep` does.
"""

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import optuna


def suggest(trial, key, entry):
    if "int" in entry:
        lo, hi = entry["int"]
        return trial.suggest_int(key, lo, hi, log=entry.get("log", False))
    if "float" in entry:
        lo, hi = entry["float"]
        return trial.suggest_float(key, lo, hi, log=entry.get("log", False))
    return trial.suggest_categorical(key, entry["choice"])


def metrics_rows(runs_dir, name):
    files = list((runs_dir / name).glob("*/metrics.csv"))
    if not files:
        return []
    with open(files[0], newline="") as f:
        return list(csv.DictReader(f))


def summary(runs_dir, name):
    import json

    files = list((runs_dir / name).glob("*/summary.json"))
    return json.loads(files[0].read_text()) if files else {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runner", required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--startup", type=int, default=5)
    ap.add_argument("--warmup-evals", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[], help="key=value for every run")
    args = ap.parse_args()

    space = tomllib.loads(Path(args.spec).read_text())["sweep"]["space"]
    out = Path(args.out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=args.startup),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=args.startup, n_warmup_steps=args.warmup_evals
        ),
    )

    def objective(trial):
        params = {key: suggest(trial, key, entry) for key, entry in space.items()}
        name = f"optuna-{trial.number}"
        overrides = list(args.set) + [f"{k}={v}" for k, v in params.items()]
        overrides += [
            f"experiment.name={name}",
            f"experiment.out_dir={runs_dir}",
            f"experiment.seed={args.seed * 1000 + trial.number}",
        ]
        proc = subprocess.Popen(
            [args.runner, "run", args.spec, *overrides],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        reported = 0
        while True:
            done = proc.poll() is not None
            rows = metrics_rows(runs_dir, name)
            for row in rows[reported:]:
                trial.report(float(row["val_exact"]), reported)
                reported += 1
                if not done and trial.should_prune():
                    proc.send_signal(signal.SIGINT)
                    proc.wait()
                    raise optuna.TrialPruned()
            if done:
                break
            time.sleep(0.1)
        if proc.returncode != 0:
            raise RuntimeError(f"runner exited with {proc.returncode}")
        return summary(runs_dir, name)["best_val_exact"]

    study.optimize(objective, n_trials=args.trials, catch=(RuntimeError,))
    with open(out / "trials.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", "val_exact"])
        for t in study.trials:
            state = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}.get(
                t.state.name, t.state.name.lower()
            )
            w.writerow([t.number, state, "" if t.value is None else t.value])
    print(f"{out}: best {study.best_value:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""One quality table for every model config, measured by ``sepkit eval``.

Every file in ``configs/model/`` is trained on the toy music set and on the toy speech set
(where the pair is valid: ``sepkit train`` refuses the others with one line, shown in the
table) for the same wall-clock budget (``trainer.max_time``), with the model's toy recipe
where one exists (the experiment that overrides ``/model`` to it and ``/dataset`` to the
toy set), then scored on the toy test set: median SDR per target for music, SI-SDRi for
speech, beside the ideal ratio mask (``oracle=irm1``, the ceiling) and the mixture (the
floor), with each model's ratio to IRM1.

    PYTHONPATH=. python benchmarks/quality.py                       # 10 minutes a model
    PYTHONPATH=. python benchmarks/quality.py --minutes 2 --models openunmix demucs
    PYTHONPATH=. python benchmarks/quality.py --resume runs/quality/<date>   # finish one

The toy music set is generated with ``--train-tracks`` training songs (64 by default, not
the 8 of ``dataset=toy``, which keep the tests quick): with 7 songs after the validation
hold-out, Open-Unmix's validation loss stayed 2.6x its training loss and its vocals and other
SDR were a quarter of IRM1's; with 43 its vocals doubled in the same 5 minutes
(benchmarks/README.md). The test songs are the same whatever the count (each is drawn from
its own seed).

``--resume`` keeps every model already scored in that folder (and the oracle scores) and
runs the rest, so an interrupted benchmark finishes, or its tables print again.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "configs"
DATASETS = {"toy": "SDR", "toy_speech": "SI-SDRi"}  # the metric a table reports per set


def sepkit(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sepkit", *arguments]
    print("$ sepkit " + " ".join(arguments), flush=True)
    return subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY)


def toy_recipe(model: str, dataset: str) -> str | None:
    """The experiment that trains ``model`` on ``dataset`` (found from its defaults list)."""
    for path in sorted((CONFIGS / "experiment").glob("*.yaml")):
        defaults = yaml.safe_load(path.read_text()).get("defaults") or []
        overrides = {
            key.removeprefix("override /"): value
            for entry in defaults
            if isinstance(entry, dict)
            for key, value in entry.items()
        }
        if overrides.get("model") == model and overrides.get("dataset") == dataset:
            return path.stem
    return None


def scores(run: Path, metric: str) -> dict[str, dict[str, float]]:
    """method -> target -> the median over tracks of ``metric`` in a results.csv."""
    values: dict[str, dict[str, list[float]]] = {}
    with open(run / "results.csv", newline="") as file:
        for row in csv.DictReader(file):
            if row["metric"] == metric:
                values.setdefault(row["method"], {}).setdefault(row["target"], [])
                values[row["method"]][row["target"]].append(float(row["value"]))
    return {
        method: {target: statistics.median(v) for target, v in by_target.items()}
        for method, by_target in values.items()
    }


def train_and_score(
    model: str, dataset: str, minutes: float, out: Path, train_tracks: int
) -> dict | str:
    """The model's scores on ``dataset`` after ``minutes`` of training, or why it did not run."""
    run = out / f"{model}-{dataset}"
    if (run / "eval" / "results.csv").exists():  # scored by the run being resumed
        return scores(run / "eval", DATASETS[dataset]).get("model", {})
    recipe = toy_recipe(model, dataset)
    chosen = [f"experiment={recipe}"] if recipe else [f"model={model}", f"dataset={dataset}"]
    if dataset == "toy":
        chosen.append(f"dataset.nb_train_tracks={train_tracks}")
    trained = sepkit(
        "train",
        *chosen,
        f"trainer.max_time={minutes * 60:g}",
        "trainer.epochs=100000",
        "trainer.patience=null",
        f"hydra.run.dir={run}",
    )
    if trained.returncode != 0:
        return (trained.stderr.strip().splitlines() or ["no message"])[-1]
    metric = DATASETS[dataset]
    scored = sepkit(
        "eval", f"checkpoint={run}", f"dataset={dataset}", f"out_dir={run}/eval", "name=model"
    )
    if scored.returncode != 0:
        return (scored.stderr.strip().splitlines() or ["no message"])[-1]
    return scores(run / "eval", metric).get("model", {})


def oracle(dataset: str, out: Path) -> dict[str, dict[str, float]]:
    """IRM1 and the mixture on ``dataset``'s test set."""
    run = out / f"oracle-{dataset}"
    if (run / "results.csv").exists():  # scored by the run being resumed
        found = scores(run, DATASETS[dataset])
        return {"IRM1": found["IRM1"], "mixture": found["mixture"]}
    # vocals among the four stems, as the models' vocals are scored (not against the
    # accompaniment, as sigsep publishes its oracles)
    result = sepkit(
        "eval", "oracle=irm1", "oracle_accompaniment=false", f"dataset={dataset}",
        f"out_dir={run}",
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    found = scores(run, DATASETS[dataset])
    return {"IRM1": found["IRM1"], "mixture": found["mixture"]}


def table(dataset: str, rows: dict[str, dict | str], ceiling: dict) -> str:
    # the targets the models separate (the oracle also scores musdb's accompaniment)
    separated = {
        target for result in rows.values() if isinstance(result, dict) for target in result
    }
    targets = [target for target in ceiling["IRM1"] if target in separated] or list(ceiling["IRM1"])
    metric = DATASETS[dataset]
    lines = [
        f"| {dataset}: {metric} (dB) | " + " | ".join(targets) + " | ratio to IRM1 |",
        "|---|" + "---:|" * (len(targets) + 1),
    ]
    for name in ("IRM1", "mixture"):
        cells = " | ".join(f"{ceiling[name][t]:.2f}" for t in targets)
        lines.append(f"| {name} (oracle) | {cells} | |")
    for model, result in rows.items():
        if isinstance(result, str):
            lines.append(f"| {model} | {result} |" + " |" * len(targets))
            continue
        cells = " | ".join(f"{result.get(t, float('nan')):.2f}" for t in targets)
        ratios = ", ".join(
            f"{result.get(t, float('nan')) / ceiling['IRM1'][t]:.0%}"
            for t in targets
            if metric == "SI-SDRi" or ceiling["IRM1"][t] > 0
        )
        lines.append(f"| {model} | {cells} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget a model")
    parser.add_argument(
        "--train-tracks", type=int, default=64, help="training songs of the toy music set"
    )
    parser.add_argument("--models", nargs="*", help="model configs (default: all)")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--out", type=Path, default=REPOSITORY / "runs" / "quality")
    parser.add_argument("--resume", type=Path, help="a folder of an earlier run to finish")
    arguments = parser.parse_args()
    models = arguments.models or sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml"))
    if arguments.resume:
        if not arguments.resume.is_dir():
            raise SystemExit(f"--resume {arguments.resume}: no such folder")
        out = arguments.resume.resolve()
    else:
        out = arguments.out / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    print(
        f"{datetime.date.today()}: {arguments.minutes:g} minutes a model, "
        f"{arguments.train_tracks} toy training songs, runs in {out}"
    )
    for dataset in arguments.datasets:
        ceiling = oracle(dataset, out)
        rows = {
            model: train_and_score(model, dataset, arguments.minutes, out, arguments.train_tracks)
            for model in models
        }
        print()
        print(table(dataset, rows, ceiling))
        print()


if __name__ == "__main__":
    main()

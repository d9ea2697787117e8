"""sepkit eval against museval, in one run: the BSSEval core, then a whole toy test set.

    PYTHONPATH=. python benchmarks/eval.py                  # 60 s core, then the toy test set
    PYTHONPATH=. python benchmarks/eval.py --seconds 30 --workers 2

1. The core (benchmarks/eval_core.py): museval.evaluate and sepkit's bss_eval_v4 on the same
   60 s of four stereo 44.1 kHz estimates, in one process held to one thread.
2. A whole test set: the generated toy set's test split (3 songs of 10 s, four stereo stems;
   ``--toy-*`` choose another), with imperfect estimates written to disk as a user's
   separation would be, scored by museval's own loop (``museval.eval_mus_dir``: musdb reads
   the references, ``eval_mus_track`` scores each track and writes its JSON) and by the
   ``sepkit eval estimates=... workers=N`` command, start-up included, without its mixture
   baseline (museval has none). Prints both wall-clock times, the ratio (also of the
   scoring phase alone: start-up and reports, ~0.8 s, weigh on a set this short), and the
   largest difference between the two sets of JSON scores. ``--toy-seconds 60`` scores
   songs of a more realistic length.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent


def write_estimates(tracks, folder: Path) -> None:
    """Imperfect estimates (filtered, leaking the other stems, plus noise) and their
    accompaniment, in museval's layout <folder>/test/<track>/<target>.wav."""
    import numpy as np
    import soundfile
    from scipy import signal

    for number, track in enumerate(tracks):
        stems = {name: soundfile.read(path)[0] for name, path in track.sources.items()}
        total = sum(stems.values())
        rng = np.random.default_rng(number)
        estimates = {}
        for index, (name, stem) in enumerate(stems.items()):
            estimate = signal.lfilter([0.8, 0.25, -0.1], [1.0], stem, axis=0)
            estimate += 0.05 * (index + 1) * (total - stem)
            estimates[name] = estimate + 0.002 * rng.standard_normal(stem.shape)
        estimates["accompaniment"] = estimates["drums"] + estimates["bass"] + estimates["other"]
        target = folder / "test" / track.name
        target.mkdir(parents=True, exist_ok=True)
        for name, estimate in estimates.items():
            soundfile.write(target / f"{name}.wav", estimate, track.sample_rate, subtype="FLOAT")


def largest_difference(ours: Path, theirs: Path) -> tuple[float, int]:
    """Largest |difference| over every track, target, frame and metric of two JSON folders."""
    largest, compared = 0.0, 0
    for path in sorted((theirs / "test").glob("*.json")):
        expected = {t["name"]: t for t in json.loads(path.read_text())["targets"]}
        ours_targets = json.loads((ours / "test" / path.name).read_text())["targets"]
        scores = {t["name"]: t for t in ours_targets}
        assert list(scores) == list(expected), (path.name, list(scores), list(expected))
        for name, target in expected.items():
            for frame, mine in zip(target["frames"], scores[name]["frames"], strict=True):
                for metric, value in frame["metrics"].items():
                    value, other = float(value), float(mine["metrics"][metric])
                    if math.isnan(value) != math.isnan(other):
                        return math.inf, compared
                    if not math.isnan(value):
                        largest = max(largest, abs(value - other))
                        compared += 1
    return largest, compared


def whole_test_set(arguments: argparse.Namespace) -> None:
    import musdb
    import museval

    from sepkit.data.toy import ToyMUSDB

    toy_options = {"nb_test_tracks": arguments.toy_tracks, "test_duration": arguments.toy_seconds}
    data = ToyMUSDB(**toy_options)
    tracks = data.test_tracks()
    with tempfile.TemporaryDirectory(prefix="sepkit-eval-benchmark-") as scratch:
        scratch = Path(scratch)
        write_estimates(tracks, scratch / "estimates")

        started = time.perf_counter()
        database = musdb.DB(root=str(data.root), subsets="test", is_wav=True)
        museval.eval_mus_dir(database, str(scratch / "estimates"), str(scratch / "museval"))
        museval_seconds = time.perf_counter() - started

        overrides = [f"dataset.{key}={value}" for key, value in toy_options.items()]
        command = [
            sys.executable, "-m", "sepkit", "eval", f"estimates={scratch / 'estimates'}",
            "dataset=toy", *overrides, f"workers={arguments.workers}", "baseline=false",
            "progress=false", f"out_dir={scratch / 'sepkit'}",
        ]  # fmt: skip
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
        started = time.perf_counter()
        subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
        sepkit_seconds = time.perf_counter() - started

        largest, compared = largest_difference(scratch / "sepkit", scratch / "museval")
        description = json.loads((scratch / "sepkit" / "evaluation.json").read_text())
        scoring_seconds = description["seconds"]
    duration = sum(track.duration for track in tracks)
    print(
        f"toy test set ({len(tracks)} songs, {duration:g} s, 4 stereo stems + accompaniment): "
        f"museval.eval_mus_dir {museval_seconds:.1f} s, `sepkit eval workers="
        f"{arguments.workers}` {sepkit_seconds:.1f} s (start-up and reports included; "
        f"{scoring_seconds:.1f} s scoring), ratio {museval_seconds / sepkit_seconds:.1f}x "
        f"({museval_seconds / scoring_seconds:.1f}x scoring only), largest difference "
        f"{largest:.1e} dB over {compared} values",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="core: track length")
    parser.add_argument("--workers", type=int, default=2, help="sepkit eval workers=")
    parser.add_argument("--toy-tracks", type=int, default=3, help="toy test songs")
    parser.add_argument("--toy-seconds", type=float, default=10.0, help="toy test song length")
    parser.add_argument("--skip-core", action="store_true", help="only the whole test set")
    arguments = parser.parse_args()
    if not arguments.skip_core:
        # one process held to one thread, as eval_core.py runs each thread count
        command = [sys.executable, str(HERE / "eval_core.py"), "--seconds", str(arguments.seconds)]
        subprocess.run([*command, "--threads", "1"], check=True)
    whole_test_set(arguments)


if __name__ == "__main__":
    main()

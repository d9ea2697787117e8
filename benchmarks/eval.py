"""``sepkit eval workers=2`` against museval's ``eval_mus_track`` loop on real-length songs.

    PYTHONPATH=. python benchmarks/eval.py                       # 4 songs of 3 minutes
    PYTHONPATH=. python benchmarks/eval.py --tracks 2 --minutes 1 --workers 2

sepkit's toy generator writes a test set of ``--tracks`` songs of ``--minutes`` each (four
stereo 44.1 kHz stems, MUSDB18's WAV layout) into a temporary folder, and imperfect
estimates of every song (filtered, leaking the other stems, plus noise, and their
accompaniment) as a user's separation would write them. Both sides then score them from
disk, start-up included:

- museval: musdb lists the test set, and for each track the estimates are read and
  ``museval.eval_mus_track`` scores them and writes the track's JSON (what
  ``museval.eval_mus_dir`` does);
- sepkit: the ``sepkit eval estimates=... workers=N baseline=false`` command in a fresh
  interpreter (museval has no mixture baseline).

Prints both wall-clock times, their ratio and the largest difference between the two sets
of JSON scores, over every track, target, window and metric.
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
TRAIN_TRACKS, TRAIN_SECONDS = 1, 1.0  # the toy set needs a training split; unused here


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


def museval_loop(root: Path, estimates: Path, out: Path) -> float:
    """museval's own loop over the test set; its seconds."""
    started = time.perf_counter()
    import musdb
    import museval
    import soundfile

    database = musdb.DB(root=str(root), subsets="test", is_wav=True)
    for track in database.tracks:
        folder = estimates / "test" / track.name
        user_estimates = {
            path.stem: soundfile.read(path, always_2d=True)[0]
            for path in sorted(folder.glob("*.wav"))
        }
        museval.eval_mus_track(track, user_estimates, output_dir=str(out))
    return time.perf_counter() - started


def sepkit_command(root: Path, estimates: Path, out: Path, arguments: argparse.Namespace) -> float:
    """``sepkit eval`` in a fresh interpreter, as a user runs it; its seconds."""
    toy = {
        "root": root,
        "nb_train_tracks": TRAIN_TRACKS,
        "train_duration": TRAIN_SECONDS,
        "nb_test_tracks": arguments.tracks,
        "test_duration": 60 * arguments.minutes,
    }
    command = [
        sys.executable, "-m", "sepkit", "eval", f"estimates={estimates}", "dataset=toy",
        *(f"dataset.{key}={value}" for key, value in toy.items()),
        f"workers={arguments.workers}", "baseline=false", "progress=false", f"out_dir={out}",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=4, help="test songs")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of each song")
    parser.add_argument("--workers", type=int, default=2, help="sepkit eval workers=")
    arguments = parser.parse_args()

    from sepkit.data.toy import ToyMUSDB

    with tempfile.TemporaryDirectory(prefix="sepkit-eval-benchmark-") as scratch:
        scratch = Path(scratch)
        started = time.perf_counter()
        data = ToyMUSDB(
            root=str(scratch / "toy"),
            nb_train_tracks=TRAIN_TRACKS,
            train_duration=TRAIN_SECONDS,
            nb_test_tracks=arguments.tracks,
            test_duration=60 * arguments.minutes,
        )
        tracks = data.test_tracks()
        write_estimates(tracks, scratch / "estimates")
        print(
            f"test set and estimates written in {time.perf_counter() - started:.0f} s", flush=True
        )

        sepkit_seconds = sepkit_command(
            data.root, scratch / "estimates", scratch / "sepkit", arguments
        )
        print(f"`sepkit eval workers={arguments.workers}`: {sepkit_seconds:.1f} s", flush=True)
        museval_seconds = museval_loop(data.root, scratch / "estimates", scratch / "museval")
        print(f"museval eval_mus_track loop: {museval_seconds:.1f} s", flush=True)

        largest, compared = largest_difference(scratch / "sepkit", scratch / "museval")
        description = json.loads((scratch / "sepkit" / "evaluation.json").read_text())
    print(
        f"{len(tracks)} songs of {arguments.minutes:g} min (4 stereo stems + accompaniment): "
        f"museval {museval_seconds:.1f} s, `sepkit eval workers={arguments.workers}` "
        f"{sepkit_seconds:.1f} s (start-up and reports included; {description['seconds']:.1f} s "
        f"scoring), ratio {museval_seconds / sepkit_seconds:.1f}x, largest difference "
        f"{largest:.1e} dB over {compared} values; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )


if __name__ == "__main__":
    main()

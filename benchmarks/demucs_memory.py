"""Peak memory of ``sepkit separate`` on a long stereo file with a Demucs model.

    PYTHONPATH=. python benchmarks/demucs_memory.py [--minutes 10] [--channels 16]
        [--segment 10] [--overlap 0.25] [--shifts 0] [--threads 2] [--checkpoint RUN]

Writes a stereo 44.1 kHz test file of ``--minutes`` (generated a minute at a time) and a
run directory holding a Demucs with random weights (``--channels`` wide; the published
models have 64 or 48), or takes a trained run or checkpoint (``--checkpoint``). Then runs
the ``sepkit`` command itself, ``sepkit separate <file> checkpoint=<run> ...``, in a child
process, as a user would, first on a clip of one segment, then on the long file. For each
it prints the child's peak resident set size (``ru_maxrss``, from ``wait4``) and its
time. Memory is bounded by the model and one segment, not by the file, when the long
file's peak stays near the clip's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from sepkit.checkpoint import save_checkpoint
from sepkit.models.demucs import Demucs

REPOSITORY = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 44100
TARGETS = ["drums", "bass", "other", "vocals"]


def write_test_file(path: Path, minutes: float) -> None:
    """A stereo song-like signal (tones, pulses and noise), written a minute at a time."""
    rng = np.random.default_rng(0)
    total = round(minutes * 60 * SAMPLE_RATE)
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 2, subtype="FLOAT") as file:
        for start in range(0, total, 60 * SAMPLE_RATE):
            length = min(60 * SAMPLE_RATE, total - start)
            time_axis = (start + np.arange(length)) / SAMPLE_RATE
            tone = 0.2 * np.sin(2 * np.pi * 220 * time_axis) * (1 + np.sin(time_axis))
            bass = 0.2 * np.sin(2 * np.pi * 55 * time_axis)
            pulses = 0.3 * (np.sin(2 * np.pi * 2 * time_axis) > 0.95) * rng.standard_normal(length)
            left = tone + bass + pulses + 0.01 * rng.standard_normal(length)
            right = 0.8 * tone + bass + pulses + 0.01 * rng.standard_normal(length)
            file.write(np.stack([left, right], axis=1).astype(np.float32))


def write_demucs_run(run_dir: Path, channels: int) -> int:
    """A run directory as ``sepkit train`` leaves it, holding a Demucs with random weights;
    returns its parameter count."""
    torch.manual_seed(0)
    model = Demucs(TARGETS, channels=channels)
    save_checkpoint(
        run_dir / "checkpoints" / "best.pt",
        {"model": {"config": model.config, "state_dict": model.state_dict()}},
    )
    return sum(parameter.numel() for parameter in model.parameters())


def run_separate(song: Path, out_dir: Path, settings: list[str]) -> tuple[float, float]:
    """``sepkit separate <song> <settings>`` in a child process; its wall time in seconds
    and peak resident set size in MiB."""
    command = [sys.executable, "-m", "sepkit", "separate", str(song), f"out_dir={out_dir}",
               "progress=false", *settings]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{log.read()}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--checkpoint", default=None, help="a trained run or checkpoint")
    parser.add_argument("--segment", type=float, default=10.0, help="seconds")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--shifts", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if arguments.checkpoint:
            model, described = arguments.checkpoint, arguments.checkpoint
        else:
            model = folder / "run"
            parameters = write_demucs_run(model, arguments.channels)
            described = f"Demucs, {parameters / 1e6:.1f}M parameters (random weights)"
        settings = [f"checkpoint={model}", f"segment={arguments.segment}",
                    f"overlap={arguments.overlap}", f"shifts={arguments.shifts}",
                    f"threads={arguments.threads}", "device=cpu", "subtype=FLOAT"]  # fmt: skip
        print(f"{described}, segments of {arguments.segment} s, shifts={arguments.shifts}")
        for minutes in (arguments.segment / 60, arguments.minutes):
            song = folder / f"song-{minutes:g}.wav"
            write_test_file(song, minutes)
            out_dir = folder / "stems"
            seconds, peak = run_separate(song, out_dir, settings)
            frames = soundfile.info(song).frames
            stems = list(out_dir.rglob(f"{song.stem}/*.wav"))
            assert stems and all(soundfile.info(stem).frames == frames for stem in stems)
            print(
                f"{minutes:6.2f} min stereo 44.1 kHz ({frames * 2 * 4 / 2**20:5.0f} MB as "
                f"float32): peak RSS {peak:5.0f} MiB, {seconds:5.1f} s "
                f"({minutes * 60 / seconds:.2f} x real time, with start-up)"
            )


if __name__ == "__main__":
    main()

"""Peak memory of separating a long stereo file with a Demucs model, segment by segment.

    PYTHONPATH=. python benchmarks/demucs_memory.py [--minutes 10] [--channels 16]
        [--segment 10] [--overlap 0.25] [--shifts 0] [--checkpoint best.pt]

Writes a stereo 44.1 kHz test file of ``--minutes`` (generated in pieces), then, in a fresh
process so that the peak belongs to separation alone, reads it segment by segment,
separates each segment (Demucs pads it to its valid length), cross-fades overlapping
segments with Demucs's triangular weights and writes each stem as soon as a stretch is
final. Memory is bounded by the model and one segment, not by the file: the figures
printed are the process's peak resident set size (``ru_maxrss``), the file's decoded size
and the time taken.

A stand-in for ``sepkit separate`` (issue 3's segment machinery) until it lands; the loop
here is deliberately simple. ``--channels`` builds a small Demucs with random weights (the
published models have 64 or 48); ``--checkpoint`` uses a trained sepkit checkpoint.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

SAMPLE_RATE = 44100


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


def triangle(length: int) -> torch.Tensor:
    """Demucs's cross-fade weights: rising to 1 in the middle of the segment, never 0."""
    weights = torch.cat(
        [torch.arange(1, length // 2 + 1), torch.arange(length - length // 2, 0, -1)]
    )
    return weights.float() / weights.max()


def separate_file(model, path: Path, out_dir: Path, segment: float, overlap: float, shifts: int):
    """Stream ``path`` through ``model`` into one file per target in ``out_dir``."""
    from sepkit.models.shifts import DEFAULT_MAX_SHIFT_SECONDS, apply_shifts

    segment_length = round(segment * SAMPLE_RATE)
    stride = round((1 - overlap) * segment_length)
    weights = triangle(segment_length)
    nb_sources = len(model.targets)
    max_shift = round(DEFAULT_MAX_SHIFT_SECONDS * SAMPLE_RATE)
    generator = torch.Generator().manual_seed(0)

    def separate(chunk: torch.Tensor) -> torch.Tensor:
        return model(chunk)["waveforms"]

    outputs = [
        soundfile.SoundFile(out_dir / f"{target}.wav", "w", SAMPLE_RATE, 2, subtype="FLOAT")
        for target in model.targets
    ]
    with soundfile.SoundFile(path) as file:
        total = file.frames
        # pending: the stretch [offset, offset + segment_length) still receiving segments
        pending = torch.zeros(nb_sources, 2, segment_length)
        pending_weight = torch.zeros(segment_length)
        for offset in range(0, total, stride):
            file.seek(offset)
            audio = file.read(segment_length, dtype="float32", always_2d=True)
            length = audio.shape[0]
            chunk = torch.from_numpy(audio.T.copy()).unsqueeze(0)
            with torch.no_grad():
                estimate = apply_shifts(separate, chunk, shifts, max_shift, generator)[0]
            pending[..., :length] += estimate * weights[:length]
            pending_weight[:length] += weights[:length]
            final = min(stride, total - offset)  # no later segment reaches these samples
            finished = (pending[..., :final] / pending_weight[:final]).numpy()
            for source, output in enumerate(outputs):
                output.write(finished[source].T)
            pending = torch.cat([pending[..., final:], torch.zeros(nb_sources, 2, final)], -1)
            pending_weight = torch.cat([pending_weight[final:], torch.zeros(final)])
    for output in outputs:
        output.close()
    return total


def child(arguments: argparse.Namespace) -> None:
    from sepkit.checkpoint import build_model, load_checkpoint
    from sepkit.models.demucs import Demucs

    torch.set_num_threads(arguments.threads)
    if arguments.checkpoint:
        model = build_model(load_checkpoint(arguments.checkpoint))
    else:
        torch.manual_seed(0)
        model = Demucs(["drums", "bass", "other", "vocals"], channels=arguments.channels)
    model.eval()
    parameters = sum(parameter.numel() for parameter in model.parameters())
    model_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    frames = separate_file(
        model,
        Path(arguments.input),
        Path(arguments.output),
        arguments.segment,
        arguments.overlap,
        arguments.shifts,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "parameters": parameters,
                "frames": frames,
                "seconds": seconds,
                "rss_after_model_mb": model_rss,
                "peak_rss_mb": peak,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--segment", type=float, default=10.0, help="seconds")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--shifts", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments)
        return
    with tempfile.TemporaryDirectory() as folder:
        song = Path(folder) / "song.wav"
        write_test_file(song, arguments.minutes)
        stems = Path(folder) / "stems"
        stems.mkdir()
        command = [
            sys.executable,
            __file__,
            "--child",
            "--input",
            str(song),
            "--output",
            str(stems),
        ]
        for name in ("minutes", "channels", "segment", "overlap", "shifts", "threads"):
            command += [f"--{name}", str(getattr(arguments, name))]
        if arguments.checkpoint:
            command += ["--checkpoint", arguments.checkpoint]
        result = json.loads(
            subprocess.run(command, check=True, capture_output=True, text=True).stdout
        )
        decoded_mb = result["frames"] * 2 * 4 / 2**20
        for stem in sorted(stems.iterdir()):
            assert soundfile.info(stem).frames == result["frames"], stem
    print(
        f"Demucs, {result['parameters'] / 1e6:.1f}M parameters, segments of {arguments.segment} s"
    )
    print(f"input: {arguments.minutes} min stereo 44.1 kHz ({decoded_mb:.0f} MB as float32)")
    print(
        f"peak RSS: {result['peak_rss_mb']:.0f} MB (after loading the model: "
        f"{result['rss_after_model_mb']:.0f} MB)"
    )
    speed = arguments.minutes * 60 / result["seconds"]
    print(f"time: {result['seconds']:.0f} s ({speed:.2f} x real time)")


if __name__ == "__main__":
    main()

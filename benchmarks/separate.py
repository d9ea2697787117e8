"""sepkit's separation against openunmix 1.3.0's Separator: speed, output, memory.

Both separate the same synthetic stereo song at 44.1 kHz with the same weights: four
networks of umxhq's shape (random, written into a temporary torch hub cache under umxhq's
Zenodo file names, so sepkit loads them as ``pretrained=umxhq``), one EM iteration of the
Wiener filter, 2 CPU threads. Every measurement runs in a fresh process:

- speed and output, per clip length: openunmix's ``Separator.forward`` on the whole clip
  against ``sepkit.Separator.separate`` (the machinery ``sepkit separate`` uses, without
  file I/O), alternating, best of ``--repeats``; the largest difference between their
  stems (clips shorter than Open-Unmix's 60 s segment are separated whole, so they must
  agree to 1e-4);
- memory: ``sepkit separate`` on a 10-minute stereo WAV file, file in and stems out, as
  a user runs it; its peak resident memory (VmHWM) and time.

    PYTHONPATH=. /tmp/venv/bin/python benchmarks/separate.py [--seconds 30 120]
        [--repeats 2] [--long-minutes 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import soundfile
import torch

SAMPLE_RATE = 44100
THREADS = 2
TARGETS = ["vocals", "drums", "bass", "other"]


def synthetic_song(seconds: float, seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """(time, 2) float32 music-like audio, peak about 0.7: a sung line, a bass line, chords
    and noise bursts on a beat, panned apart. ``offset`` (seconds) continues the same song."""
    rng = np.random.default_rng([seed, int(offset)])
    t = offset + np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE

    def harmonics(frequency: np.ndarray, count: int) -> np.ndarray:
        phase = 2 * np.pi * (frequency * t)  # piecewise-constant notes: phase jumps are fine
        return sum(np.sin(k * phase) / k for k in range(1, count + 1))

    def steps(values: list[float], period: float) -> np.ndarray:
        return np.asarray(values)[(t / period).astype(int) % len(values)]

    voice = 0.15 * harmonics(steps([220, 247, 262, 294, 330], 0.5), 6)
    voice *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t).clip(0)
    bass = 0.15 * harmonics(steps([55, 55, 73, 82], 1.0), 4)
    drums = 0.25 * np.exp(-(t % 0.25) / 0.03) * rng.standard_normal(t.shape)
    chords = 0.05 * sum(harmonics(steps([f, f * 1.5], 2.0), 3) for f in (262, 330))
    pans = np.array([[1.0, 0.8], [0.9, 0.9], [0.7, 1.0], [0.5, 1.0]])
    sources = [voice, bass, drums, chords]
    return sum(p[None] * s[:, None] for p, s in zip(pans, sources)).astype(np.float32)


def write_hub_cache(torch_home: Path) -> None:
    """umxhq's four files, holding random openunmix.model.OpenUnmix weights."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # imported, unused
    from openunmix.model import OpenUnmix

    from sepkit.models.pretrained import OPEN_UNMIX

    os.environ["TORCH_HOME"] = str(torch_home)
    release = OPEN_UNMIX["umxhq"]
    for index, target in enumerate(release.targets):
        torch.manual_seed(index)
        network = OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487)
        with torch.no_grad():  # statistics away from their defaults, as trained ones are
            network.input_mean.uniform_(-0.2, 0.2)
            network.input_scale.uniform_(0.5, 1.5)
        path = Path(torch.hub.get_dir()) / "checkpoints" / f"{release.files[target]}.pth"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), path)


def resident_kib(field: str) -> int:
    """VmRSS (current) or VmHWM (peak) of this process in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


# -- children: one measurement each, in a fresh process -----------------------------------


def openunmix_separator():
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # imported, unused
    from openunmix.model import OpenUnmix, Separator

    from sepkit.models.pretrained import OPEN_UNMIX, load_hub_state_dict

    release = OPEN_UNMIX["umxhq"]
    networks = {}
    for target in TARGETS:
        networks[target] = OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487)
        networks[target].load_state_dict(load_hub_state_dict(release.url(target), target))
    separator = Separator(networks, niter=1, residual=False).eval()
    separator.freeze()

    def separate(audio: np.ndarray) -> np.ndarray:  # (time, 2) -> (sources, time, 2)
        with torch.no_grad():
            estimates = separator(torch.from_numpy(audio.T.copy())[None])[0]
        return estimates.numpy().transpose(0, 2, 1)

    return separate


def sepkit_separator():
    from sepkit.separate import Separator

    separator = Separator.from_pretrained("umxhq", niter=1, device="cpu")

    def separate(audio: np.ndarray) -> np.ndarray:
        stems = separator.separate(audio.T, SAMPLE_RATE)
        return np.stack([stems[target].numpy().T for target in TARGETS])

    return separate


def run_speed_child(implementation: str, clip: Path, output: Path, repeats: int) -> None:
    """Separate ``clip`` ``repeats`` times; print the best wall and CPU time and the peak
    memory as key=value; save the stems."""
    torch.set_num_threads(THREADS)
    audio = np.load(clip)
    separate = {"openunmix": openunmix_separator, "sepkit": sepkit_separator}[implementation]()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        stems = separate(audio)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    np.save(output, stems)
    peak = resident_kib("VmHWM") / 1024
    print(f"wall={min(walls)} cpu={min(cpus)} peak_rss_mib={peak}")


def run_file_child(song: Path, out_dir: Path) -> None:
    """``sepkit separate <song> pretrained=umxhq`` in this process; its time and peak."""
    from sepkit.cli import main

    wall = time.perf_counter()
    main(["separate", str(song), "pretrained=umxhq", f"out_dir={out_dir}", "threads=2",
          "progress=false"])  # fmt: skip
    wall = time.perf_counter() - wall
    print(f"wall={wall} peak_rss_mib={resident_kib('VmHWM') / 1024}")


def child(arguments: list[str]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *arguments], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"{arguments[0]} failed:\n{result.stdout}\n{result.stderr}")
    figures = dict(item.split("=") for item in result.stdout.split() if "=" in item)
    return {key: float(value) for key, value in figures.items()}


def write_long_song(path: Path, minutes: float) -> None:
    """A stereo 16-bit WAV, written a minute at a time."""
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 2, subtype="PCM_16") as file:
        for minute in range(int(np.ceil(minutes))):
            seconds = min(60.0, minutes * 60 - minute * 60)
            file.write(synthetic_song(seconds, offset=minute * 60.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 120])
    parser.add_argument("--repeats", type=int, default=2, help="separations per process")
    parser.add_argument("--rounds", type=int, default=2, help="processes per implementation")
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        kind, *rest = arguments.child
        if kind == "file":
            run_file_child(Path(rest[0]), Path(rest[1]))
        else:
            run_speed_child(kind, Path(rest[0]), Path(rest[1]), int(rest[2]))
        return

    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, {THREADS} threads, umxhq-shaped Open-Unmix (random "
        f"weights), 4 targets, niter=1, stereo 44.1 kHz; load average {load:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        write_hub_cache(directory / "torch")
        for seconds in arguments.seconds:
            clip = directory / "clip.npy"
            np.save(clip, synthetic_song(seconds))
            runs: dict[str, list[dict]] = {"openunmix": [], "sepkit": []}
            for _ in range(arguments.rounds):
                for name in runs:  # alternate: drifts in the machine's load hit both alike
                    output = directory / f"{name}.npy"
                    runs[name].append(child([name, str(clip), str(output), str(arguments.repeats)]))
            best = {name: {k: min(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
            difference = np.abs(
                np.load(directory / "sepkit.npy") - np.load(directory / "openunmix.npy")
            ).max()
            print(f"\n{seconds:g} s clip:")
            for name, figures in best.items():
                print(
                    f"  {name:9s} {figures['wall']:6.2f} s wall  {figures['cpu']:6.2f} s CPU  "
                    f"peak RSS {figures['peak_rss_mib']:6.0f} MiB"
                )
            speedup = best["openunmix"]["wall"] / best["sepkit"]["wall"]
            print(f"  sepkit {speedup:.2f}x faster; largest stem difference {difference:.1e}")

        song = directory / "long.wav"
        write_long_song(song, arguments.long_minutes)
        figures = child(["file", str(song), str(directory / "separated")])
        print(
            f"\nsepkit separate, {arguments.long_minutes:g}-minute stereo WAV, file to stems: "
            f"{figures['wall']:.1f} s, peak RSS {figures['peak_rss_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()

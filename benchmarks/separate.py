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

With ``--model htdemucs`` the reference is demucs 4.1.0's ``apply_model`` (split, overlap
0.25, shifts 0) on a package of htdemucs's published shape written into the hub cache under
htdemucs's file name (sepkit loads it as ``pretrained=htdemucs``); with ``--model
bs_roformer`` it is audio-separator's BSRoformer of viperx's community shape run chunk by
chunk as MSST's ``demix`` does (``tests/test_segment_weighting.py``), from a checkpoint and
YAML that sepkit loads with ``checkpoint=... config=...``. Both import the references
through ``tests/references.py``.

    PYTHONPATH=. /tmp/venv/bin/python benchmarks/separate.py [--seconds 30 120]
        [--repeats 2] [--long-minutes 10] [--model umxhq|htdemucs|bs_roformer]
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


# -- the modern models: htdemucs against demucs's apply_model, bs_roformer against MSST ----

DEMUCS_SOURCES = ["drums", "bass", "other", "vocals"]
# htdemucs's published package: DConv in encoders and decoders, a 512-channel transformer,
# trained on 7.8 s excerpts (as tests/test_htdemucs.py's published shape)
HTDEMUCS = dict(dconv_mode=3, bottom_channels=512)
# viperx's model_bs_roformer_ep_317_sdr_12.9755 YAML: chunk 352800 (8 s), num_overlap 2
ROFORMER_CHUNK, ROFORMER_OVERLAPS = 352800, 2


def write_htdemucs_cache(torch_home: Path) -> None:
    """htdemucs's published file (demucs's package layout) holding random weights."""
    import importlib
    from fractions import Fraction

    from omegaconf import OmegaConf

    from sepkit.models.pretrained.demucs4 import DEMUCS4
    from tests.references import reference_folder

    os.environ["TORCH_HOME"] = str(torch_home)
    path = Path(torch.hub.get_dir()) / "checkpoints" / DEMUCS4["htdemucs"].files[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with reference_folder("demucs4", "demucs", "einops"):
        states = importlib.import_module("demucs.states")
        htdemucs = importlib.import_module("demucs.htdemucs")
        torch.manual_seed(0)
        model = htdemucs.HTDemucs(sources=DEMUCS_SOURCES, segment=Fraction(39, 5), **HTDEMUCS)
        torch.save(states.serialize_model(model, OmegaConf.create({"model": "x"})), path)


def write_roformer_checkpoint(directory: Path) -> list[str]:
    """A bs_roformer of viperx's shape with random weights, as MSST saves it, and its
    YAML; returns the ``sepkit separate`` keys that load it."""
    import yaml

    from sepkit.models.bs_roformer import DEFAULT_FREQS_PER_BANDS
    from tests.test_roformer import PUBLISHED, reference_model

    torch.manual_seed(0)
    arguments = {**PUBLISHED["bs"], "freqs_per_bands": DEFAULT_FREQS_PER_BANDS}
    reference = reference_model("bs", ["vocals"], True, **arguments)
    torch.save(reference.state_dict(), directory / "bs_roformer.ckpt")
    config = {
        "audio": {"chunk_size": ROFORMER_CHUNK, "sample_rate": SAMPLE_RATE, "num_channels": 2},
        "model": {**arguments, "freqs_per_bands": list(DEFAULT_FREQS_PER_BANDS),
                  "stereo": True, "num_stems": 1},
        "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
        "inference": {"batch_size": 1, "num_overlap": ROFORMER_OVERLAPS},
    }  # fmt: skip
    (directory / "bs_roformer.yaml").write_text(yaml.safe_dump(config))
    return [
        f"checkpoint={directory / 'bs_roformer.ckpt'}",
        f"config={directory / 'bs_roformer.yaml'}",
    ]


def demucs_separator():
    """demucs 4.1.0's apply_model on the package in the hub cache: split, overlap 0.25,
    no shifts (its separate.py's defaults but shifts, which draw random delays)."""
    import importlib

    from sepkit.models.pretrained.demucs4 import DEMUCS4
    from tests.references import reference_folder

    path = Path(torch.hub.get_dir()) / "checkpoints" / DEMUCS4["htdemucs"].files[0]
    with reference_folder("demucs4", "demucs", "einops"):
        states = importlib.import_module("demucs.states")
        apply = importlib.import_module("demucs.apply")
        model = states.load_model(torch.load(path, weights_only=False)).eval()

    def separate(audio: np.ndarray) -> np.ndarray:
        mixture = torch.from_numpy(audio.T.copy())[None]
        with torch.no_grad():
            stems = apply.apply_model(model, mixture, shifts=0, split=True, overlap=0.25)
        return stems[0].numpy().transpose(0, 2, 1)

    return separate


def msst_separator(directory: Path):
    """The reference BSRoformer run chunk by chunk as MSST's demix does (batch size 1)."""
    from sepkit.models.bs_roformer import DEFAULT_FREQS_PER_BANDS
    from tests.test_roformer import PUBLISHED, reference_model
    from tests.test_segment_weighting import msst_demix

    arguments = {**PUBLISHED["bs"], "freqs_per_bands": DEFAULT_FREQS_PER_BANDS}
    model = reference_model("bs", ["vocals"], True, **arguments)
    model.load_state_dict(torch.load(directory / "bs_roformer.ckpt"))

    def separate(audio: np.ndarray) -> np.ndarray:
        mixture = torch.from_numpy(audio.T.copy())
        stems = msst_demix(model, mixture, ROFORMER_CHUNK, ROFORMER_OVERLAPS)
        return stems.numpy().transpose(0, 2, 1)

    return separate


def sepkit_keys_separator(keys: list[str]):
    """sepkit's Separator built from ``sepkit separate``'s model keys."""
    from sepkit.separate import Separator

    options = dict(key.split("=", 1) for key in keys)
    if "pretrained" in options:
        separator = Separator.from_pretrained(options["pretrained"], device="cpu")
    else:
        separator = Separator.from_checkpoint(
            options["checkpoint"], options["config"], device="cpu"
        )

    def separate(audio: np.ndarray) -> np.ndarray:
        stems = separator.separate(audio.T, SAMPLE_RATE)
        return np.stack([stem.numpy().T for stem in stems.values()])

    return separate


def run_speed_child(
    implementation: str, clip: Path, output: Path, repeats: int, keys: list[str]
) -> None:
    """Separate ``clip`` ``repeats`` times with the model ``keys`` name (``sepkit
    separate``'s keys); print the best wall and CPU time and the peak memory as
    key=value; save the stems."""
    torch.set_num_threads(THREADS)
    audio = np.load(clip)
    if implementation == "openunmix":
        separate = openunmix_separator()
    elif implementation == "demucs":
        separate = demucs_separator()
    elif implementation == "msst":
        separate = msst_separator(Path(keys[0].split("=", 1)[1]).parent)
    elif keys == ["pretrained=umxhq"]:
        separate = sepkit_separator()
    else:
        separate = sepkit_keys_separator(keys)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        stems = separate(audio)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    np.save(output, stems)
    peak = resident_kib("VmHWM") / 1024
    print(f"wall={min(walls)} cpu={min(cpus)} peak_rss_mib={peak}")


def run_file_child(song: Path, out_dir: Path, keys: list[str]) -> None:
    """``sepkit separate <song> <keys>`` in this process; its time and peak."""
    from sepkit.cli import main

    wall = time.perf_counter()
    main(["separate", str(song), *keys, f"out_dir={out_dir}", "threads=2",
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
    parser.add_argument(
        "--model", choices=["umxhq", "htdemucs", "bs_roformer"], default="umxhq",
        help="umxhq against openunmix, htdemucs against demucs 4.1.0's apply_model, "
        "bs_roformer (viperx's shape) against MSST's chunked inference",
    )  # fmt: skip
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        kind, *rest = arguments.child
        if kind == "file":
            run_file_child(Path(rest[0]), Path(rest[1]), rest[2:])
        else:
            run_speed_child(kind, Path(rest[0]), Path(rest[1]), int(rest[2]), rest[3:])
        return
    compare(arguments)


def compare(arguments: argparse.Namespace) -> None:
    """Both implementations on each clip, then ``sepkit separate`` on a long file."""
    load = os.getloadavg()[0]
    what = {
        "umxhq": "umxhq-shaped Open-Unmix (random weights), 4 targets, niter=1",
        "htdemucs": "htdemucs-shaped HTDemucs (random weights), segment 7.8 s, overlap "
        "0.25, shifts 0",
        "bs_roformer": "bs_roformer of viperx's shape (random weights), chunk 352800, "
        "num_overlap 2",
    }[arguments.model]
    print(
        f"torch {torch.__version__}, {THREADS} threads, {what}, stereo 44.1 kHz; load "
        f"average {load:.1f} on {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        reference, keys = (
            {"umxhq": "openunmix", "htdemucs": "demucs"}.get(arguments.model, "msst"),
            [f"pretrained={arguments.model}"],
        )
        if arguments.model == "bs_roformer":
            keys = write_roformer_checkpoint(directory)
        elif arguments.model == "htdemucs":
            write_htdemucs_cache(directory / "torch")
        else:
            write_hub_cache(directory / "torch")
        for seconds in arguments.seconds:
            clip = directory / "clip.npy"
            np.save(clip, synthetic_song(seconds))
            runs: dict[str, list[dict]] = {reference: [], "sepkit": []}
            for _ in range(arguments.rounds):
                for name in runs:  # alternate: drifts in the machine's load hit both alike
                    output = directory / f"{name}.npy"
                    repeats = str(arguments.repeats)
                    runs[name].append(child([name, str(clip), str(output), repeats, *keys]))
            best = {name: {k: min(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
            difference = np.abs(
                np.load(directory / "sepkit.npy") - np.load(directory / f"{reference}.npy")
            ).max()
            print(f"\n{seconds:g} s clip (load average {os.getloadavg()[0]:.1f}):")
            for name, figures in best.items():
                print(
                    f"  {name:9s} {figures['wall']:6.2f} s wall  {figures['cpu']:6.2f} s CPU  "
                    f"peak RSS {figures['peak_rss_mib']:6.0f} MiB"
                )
            speedup = best[reference]["wall"] / best["sepkit"]["wall"]
            print(f"  sepkit {speedup:.2f}x faster; largest stem difference {difference:.1e}")

        song = directory / "long.wav"
        write_long_song(song, arguments.long_minutes)
        figures = child(["file", str(song), str(directory / "separated"), *keys])
        print(
            f"\nsepkit separate, {arguments.long_minutes:g}-minute stereo WAV, file to stems: "
            f"{figures['wall']:.1f} s, peak RSS {figures['peak_rss_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()

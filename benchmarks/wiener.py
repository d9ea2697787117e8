"""Speed and memory of sepkit's Wiener filter against Open-Unmix 1.3.0's.

Both filter the same inputs the way Open-Unmix's Separator would after its models: a stereo
mixture at 44.1 kHz, STFT 4096/1024 (2049 bins), 4 sources, one EM iteration, windows of 300
frames, 2 CPU threads. Each measurement runs in a fresh process; peak memory is that process's
peak RSS, and the part above the inputs (the high-water mark is reset after loading them). The
inputs are synthetic music (panned tones, a bass line, noise bursts for drums) with magnitude
estimates that are 30 % off, as a model's would be.

    PYTHONPATH=. /tmp/venv/bin/python benchmarks/wiener.py [--seconds 30 120] [--repeats 3]
"""

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

SAMPLE_RATE = 44100
N_FFT = 4096
HOP = 1024
NUM_SOURCES = 4
ITERATIONS = 1
WINDOW_FRAMES = 300
THREADS = 2


def synthesize_sources(seconds: float, seed: int = 0) -> torch.Tensor:
    """(sources=4, channels=2, time) float32 audio: vocals, bass, drums, other; mixture peak ~1."""
    generator = torch.Generator().manual_seed(seed)
    time_axis = torch.arange(int(seconds * SAMPLE_RATE), dtype=torch.float64) / SAMPLE_RATE

    def harmonics(fundamental: torch.Tensor, count: int) -> torch.Tensor:
        phase = 2 * math.pi * torch.cumsum(fundamental, 0) / SAMPLE_RATE
        return sum(torch.sin(k * phase) / k for k in range(1, count + 1))

    def steps(values: list[float], period: float) -> torch.Tensor:
        index = (time_axis / period).long() % len(values)
        return torch.tensor(values, dtype=torch.float64)[index]

    vibrato = 1 + 0.01 * torch.sin(2 * math.pi * 5 * time_axis)
    syllables = 0.5 + 0.5 * torch.sin(2 * math.pi * 3 * time_axis).clamp(min=0)
    vocals = 0.3 * syllables * harmonics(steps([220, 247, 262, 294, 330], 0.5) * vibrato, 8)
    bass = 0.3 * harmonics(steps([55, 55, 73, 82], 1.0), 4)
    beat = (time_axis % 0.25) / 0.03
    noise = torch.randn(time_axis.shape, generator=generator, dtype=torch.float64)
    drums = 0.4 * torch.exp(-beat) * noise
    other = 0.12 * sum(
        harmonics(steps(chord, 2.0), 3) for chord in ([262, 392], [330, 440], [392, 494])
    )
    pans = torch.tensor([[1.0, 1.0], [0.9, 0.9], [1.0, 0.7], [0.4, 1.0]], dtype=torch.float64)
    sources = torch.stack([vocals, bass, drums, other])[:, None] * pans[..., None]
    return sources.float()


def stft(audio: torch.Tensor) -> torch.Tensor:
    """(..., time) -> (..., 2049, frames) complex: Open-Unmix's Separator STFT."""
    flat = audio.reshape(-1, audio.shape[-1])
    window = torch.hann_window(N_FFT)
    spectrogram = torch.stft(flat, N_FFT, HOP, window=window, center=True, return_complex=True)
    return spectrogram.view(audio.shape[:-1] + spectrogram.shape[-2:])


def make_inputs(seconds: float, path: Path) -> None:
    """Save (magnitudes (1, 4, 2, 2049, frames), mixture (1, 2, 2049, frames) complex64)."""
    sources = synthesize_sources(seconds)
    mixture = stft(sources.sum(0))
    source_magnitudes = stft(sources).abs()
    generator = torch.Generator().manual_seed(1)
    error = 1 + 0.3 * (2 * torch.rand(source_magnitudes.shape, generator=generator) - 1)
    magnitudes = source_magnitudes * error + 0.05 * mixture.abs()
    torch.save({"magnitudes": magnitudes[None], "mixture": mixture[None]}, path)


def openunmix_filter(magnitudes: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """Open-Unmix's filtering as Separator.forward runs it after its models: from its layouts
    (spectrograms (batch, channels, bins, frames, sources), STFT (batch, channels, bins, frames,
    2)) to the contiguous (batch, sources, channels, bins, frames, 2) it hands to its iSTFT."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # imported, never used
    from openunmix.filtering import wiener

    spectrograms = magnitudes.permute(0, 2, 3, 4, 1).permute(0, 3, 2, 1, 4)
    mix_stft = torch.view_as_real(mixture).permute(0, 3, 2, 1, 4)
    batch, num_frames = mix_stft.shape[:2]
    separated = torch.zeros(mix_stft.shape + (NUM_SOURCES,), dtype=mix_stft.dtype)
    for item in range(batch):
        position = 0
        while position < num_frames:
            frames = torch.arange(position, min(num_frames, position + WINDOW_FRAMES))
            position = int(frames[-1]) + 1
            separated[item, frames] = wiener(
                spectrograms[item, frames], mix_stft[item, frames], ITERATIONS
            )
    return separated.permute(0, 5, 3, 2, 1, 4).contiguous()


def sepkit_filter(magnitudes: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    from sepkit.blocks.wiener import wiener

    return wiener(magnitudes, mixture, ITERATIONS, window_frames=WINDOW_FRAMES)


def resident_kib(field: str) -> int:
    """VmRSS (current) or VmHWM (peak) of this process in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def run_child(implementation: str, inputs: Path, output: Path | None, dtype: str) -> None:
    """Filter once in this (fresh) process; print seconds and memory as key=value."""
    torch.set_num_threads(THREADS)
    data = torch.load(inputs)
    magnitudes, mixture = data["magnitudes"], data["mixture"]
    if dtype == "float64":
        magnitudes, mixture = magnitudes.double(), mixture.to(torch.complex128)
    run = {"openunmix": openunmix_filter, "sepkit": sepkit_filter}[implementation]
    run(magnitudes[..., :20], mixture[..., :20])  # first-call costs (imports, thread pool)
    loading_peak = resident_kib("VmHWM")
    before = resident_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    wall, cpu = time.perf_counter(), time.process_time()
    separated = run(magnitudes, mixture)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resident_kib("VmHWM")
    print(
        f"wall={wall} cpu={cpu} peak_rss_mib={max(loading_peak, peak) / 1024} "
        f"peak_above_inputs_mib={(peak - before) / 1024}"
    )
    if output is not None:
        if separated.dim() == 6:
            separated = torch.view_as_complex(separated)
        torch.save(separated, output)


def measure(implementation: str, inputs: Path, output: Path | None, dtype: str = "float32") -> dict:
    command = [sys.executable, __file__, "--child", implementation, str(inputs), str(output or "")]
    result = subprocess.run(
        command + ["--dtype", dtype], capture_output=True, text=True, env=os.environ
    )
    if result.returncode != 0:
        raise RuntimeError(f"{implementation} run failed:\n{result.stderr}")
    figures = dict(item.split("=") for item in result.stdout.split())
    return {key: float(value) for key, value in figures.items()}


def istft(spectrogram: torch.Tensor, length: int) -> torch.Tensor:
    flat = spectrogram.reshape((-1,) + spectrogram.shape[-2:])
    window = torch.hann_window(N_FFT, dtype=flat.real.dtype)
    return torch.istft(flat, N_FFT, HOP, window=window, center=True, length=length)


def differences(ours: torch.Tensor, reference: torch.Tensor, length: int) -> str:
    ours, reference = ours.to(torch.complex128), reference.to(torch.complex128)
    relative = ((ours - reference).abs().max() / reference.abs().max()).item()
    waveform = (istft(ours, length) - istft(reference, length)).abs().max().item()
    return f"spectrogram {relative:.1e} of peak, waveform {waveform:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 120])
    parser.add_argument("--repeats", type=int, default=3, help="runs per implementation")
    parser.add_argument(
        "--exact-up-to",
        type=float,
        default=30,
        help="also run Open-Unmix in float64 (the exact result) for inputs up to this long",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        implementation, inputs, output = arguments.child
        run_child(implementation, Path(inputs), Path(output) if output else None, arguments.dtype)
        return

    print(
        f"torch {torch.__version__}, {THREADS} threads, {NUM_SOURCES} sources, stereo, "
        f"STFT {N_FFT}/{HOP}, EM iterations {ITERATIONS}, windows of {WINDOW_FRAMES} frames"
    )
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        for seconds in arguments.seconds:
            inputs = directory / "inputs.pt"
            make_inputs(seconds, inputs)
            outputs = {name: directory / f"{name}.pt" for name in ("openunmix", "sepkit")}
            runs = {name: [] for name in outputs}
            for repeat in range(arguments.repeats):
                for name, output in outputs.items():  # alternate: load drifts hit both alike
                    runs[name].append(measure(name, inputs, output if repeat == 0 else None))
            best = {
                name: {key: min(run[key] for run in figures) for key in figures[0]}
                for name, figures in runs.items()
            }
            frames = torch.load(outputs["sepkit"]).shape[-1]
            print(f"\n{seconds:g} s ({frames} frames), best of {arguments.repeats}:")
            for name, figures in best.items():
                print(
                    f"  {name:9s} {figures['wall']:6.2f} s wall  {figures['cpu']:6.2f} s CPU  "
                    f"peak RSS {figures['peak_rss_mib']:6.0f} MiB  "
                    f"(above inputs {figures['peak_above_inputs_mib']:5.0f} MiB)"
                )
            theirs, ours = best["openunmix"], best["sepkit"]
            print(
                f"  openunmix / sepkit: time x{theirs['wall'] / ours['wall']:.1f} wall, "
                f"x{theirs['cpu'] / ours['cpu']:.1f} CPU; memory above inputs "
                f"x{theirs['peak_above_inputs_mib'] / ours['peak_above_inputs_mib']:.1f}"
            )
            length = (frames - 1) * HOP
            ours_spectrogram = torch.load(outputs["sepkit"])
            theirs_spectrogram = torch.load(outputs["openunmix"])
            print(
                "  sepkit vs openunmix (float32):",
                differences(ours_spectrogram, theirs_spectrogram, length),
            )
            if seconds <= arguments.exact_up_to:
                exact_path = directory / "exact.pt"
                measure("openunmix", inputs, exact_path, dtype="float64")
                exact = torch.load(exact_path)
                for name, spectrogram in (
                    ("sepkit", ours_spectrogram),
                    ("openunmix", theirs_spectrogram),
                ):
                    print(
                        f"  {name} (float32) vs exact (openunmix float64):",
                        differences(spectrogram, exact, length),
                    )


if __name__ == "__main__":
    main()

"""BSSEval v4 speed: museval.evaluate against sepkit's bss_eval_v4 on the same estimates.

    PYTHONPATH=. python benchmarks/eval_core.py               # 60 s, 1 then 2 threads
    PYTHONPATH=. python benchmarks/eval_core.py --seconds 10 --threads 1

Four stereo 44.1 kHz stems, band-limited at 16 kHz and rounded to 16 bits like MUSDB18's,
with imperfect estimates (filtered, leaking the other stems, plus noise). Each thread count
runs in its own process, with every library (numpy's BLAS, MKL, OpenMP) held to it,
so both implementations get the same CPU. Prints both times (wall clock, and CPU time of
the process, steadier on a shared machine), their ratios and the largest difference of any
frame and metric.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def generated_track(seconds: float, seed: int = 0):
    """(references, estimates), each (4, samples, 2) float64."""
    import numpy as np
    from scipy import signal

    rate = 44100
    rng = np.random.default_rng(seed)
    num_samples = round(seconds * rate)
    time = np.arange(num_samples) / rate
    lowpass = signal.butter(12, 16000, fs=rate, output="sos")
    references = []
    for index in range(4):
        band = signal.butter(4, [80 * (index + 1), 1500 * (index + 1)], "band", fs=rate)
        stem = signal.lfilter(*band, rng.standard_normal((num_samples, 2)), axis=0)
        stem += 0.5 * np.sin(2 * np.pi * 110 * (index + 1) * time)[:, None] * [1.0, 0.7]
        stem *= (0.6 + 0.4 * np.sin(2 * np.pi * (0.4 + 0.3 * index) * time))[:, None]
        stem = signal.sosfilt(lowpass, stem, axis=0)
        references.append(np.round(stem / np.abs(stem).max() * 0.4 * 32768) / 32768)
    references = np.stack(references)
    estimates = signal.lfilter([0.8, 0.25, -0.1], [1.0], references, axis=1)
    for index in range(4):
        estimates[index] += 0.05 * (index + 1) * (references.sum(axis=0) - references[index])
    estimates += 0.003 * rng.standard_normal(references.shape)
    return references, estimates


def measure(seconds: float, threads: int) -> None:
    """Time both implementations in this process (its thread limits are already set)."""
    import time

    import museval
    import numpy as np

    from sepkit.metrics import bss_eval_v4

    references, estimates = generated_track(seconds)
    bss_eval_v4(references[:, :44100], estimates[:, :44100])  # load kernels before timing

    def timed(function, *arguments):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function(*arguments)
        return result, time.perf_counter() - wall, time.process_time() - cpu

    (sdr, isr, sir, sar), museval_wall, museval_cpu = timed(museval.evaluate, references, estimates)
    fast, fast_wall, fast_cpu = timed(bss_eval_v4, references, estimates)

    expected = {"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar}
    largest = max(np.nanmax(np.abs(fast[name] - expected[name])) for name in expected)
    print(
        f"{seconds:g} s, 4 stereo sources, {threads} thread(s): "
        f"museval {museval_wall:.2f} s (cpu {museval_cpu:.2f} s), "
        f"bss_eval_v4 {fast_wall:.2f} s (cpu {fast_cpu:.2f} s), "
        f"ratio {museval_wall / fast_wall:.1f}x (cpu {museval_cpu / fast_cpu:.1f}x), "
        f"largest difference {largest:.1e} dB over {fast['SDR'].size * 4} values",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="track length")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.in_process:
        measure(arguments.seconds, arguments.threads[0])
        return
    for threads in arguments.threads:
        environment = dict(os.environ)
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            environment[variable] = str(threads)
        command = [sys.executable, __file__, "--in-process", "--seconds", str(arguments.seconds)]
        subprocess.run([*command, "--threads", str(threads)], env=environment, check=True)


if __name__ == "__main__":
    main()

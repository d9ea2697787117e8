"""Would a scoring process gain by keeping the memory it frees? Time and peak memory.

    PYTHONPATH=. python benchmarks/eval_memory.py                    # songs of 60, 30, 90, 45 s
    PYTHONPATH=. python benchmarks/eval_memory.py --seconds 10 10 10

One process per setting scores the same generated tracks (eval_core.generated_track: four
stereo stems like MUSDB18's, imperfect estimates) in turn with bss_eval_v4 on one thread,
as a `sepkit eval workers=N` process does: once with glibc's default malloc settings (what
sepkit runs with), once after glibc's mallopt has been told to map no buffer on its own and
to keep 1 GiB of freed memory (reuse_freed_memory below: sepkit's scoring processes did
this until the evaluation package dropped it). Prints the seconds of each track, the memory
held after it and the peak. Linux with glibc only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from sepkit.evaluate.pool import THREAD_VARIABLES

HERE = Path(__file__).resolve().parent
# glibc's mallopt parameters (malloc.h) and the freed memory a process keeps
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
KEPT_FREE_BYTES = 2**30


def reuse_freed_memory() -> None:
    """Make glibc's malloc keep freed memory for the next allocation instead of returning
    it to the system: every buffer from the heap, whose top KEPT_FREE_BYTES are not trimmed,
    so that each page is faulted in once per process rather than once per buffer."""
    import ctypes

    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES)


def score_in_turn(seconds: list[float], reuse: bool) -> None:
    import resource
    import time

    sys.path.insert(0, str(HERE))
    from eval_core import generated_track

    from sepkit.metrics.bsseval import bss_eval_v4

    if reuse:
        reuse_freed_memory()
    tracks = [generated_track(length, seed) for seed, length in enumerate(seconds)]
    total = 0.0
    for length, (references, estimates) in zip(seconds, tracks, strict=True):
        started = time.perf_counter()
        bss_eval_v4(references, estimates)
        elapsed = time.perf_counter() - started
        total += elapsed
        with open("/proc/self/statm") as statm:
            held = int(statm.read().split()[1]) * resource.getpagesize() >> 20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
        print(
            f"  {length:g} s song: {elapsed:.2f} s, {held} MB held after it, peak {peak} MB",
            flush=True,
        )
    print(f"  all: {total:.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60, 30, 90, 45])
    parser.add_argument("--reuse", choices=("yes", "no"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.reuse is not None:
        score_in_turn(arguments.seconds, arguments.reuse == "yes")
        return
    if not Path("/proc/self/statm").exists():
        sys.exit("eval_memory.py reads /proc: Linux only")
    lengths = [str(length) for length in arguments.seconds]
    for reuse, title in (("no", "glibc's defaults"), ("yes", "reusing freed memory")):
        print(f"{title}:", flush=True)
        command = [sys.executable, __file__, "--reuse", reuse, "--seconds", *lengths]
        # one thread, as in a scoring process: the BLAS libraries read these when they load
        one_thread = dict.fromkeys(THREAD_VARIABLES, "1")
        subprocess.run(command, check=True, env={**os.environ, **one_thread})


if __name__ == "__main__":
    main()

"""The fork server the scoring processes of ``sepkit eval workers=N`` start from.

Kept apart from sepkit.evaluate, and light (the standard library only), so that the
command can start the server before it imports anything else: the server's own imports
are the longest stretch before scoring can begin.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# what a scoring process needs on the CPU: the metrics (numpy) and scipy's LAPACK; where a
# GPU may score, torch too (about a second, once for all scoring processes)
PRELOAD = ["sepkit.evaluate", "sepkit.metrics.track", "scipy.linalg"]
GPU_PRELOAD = ["torch"]


def no_gpu_here() -> bool:
    """Whether this machine certainly has no GPU torch could score on, told without importing
    torch: macOS (MPS has no float64), and Linux without the device files of NVIDIA's driver
    (/dev/nvidiactl; /dev/dxg under WSL) and of ROCm's (/dev/kfd)."""
    if sys.platform == "darwin":
        return True
    if sys.platform.startswith("linux"):
        return not any(map(os.path.exists, ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")))
    return False


@contextlib.contextmanager
def one_thread_per_library() -> Iterator[None]:
    """Hold the BLAS/OpenMP pools of processes started inside to one thread (they read these
    variables when they load; this process's libraries are already loaded)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def scoring_context() -> Any:
    """The multiprocessing context of the scoring processes.

    Where it exists (Linux, macOS) a fork server starts them: one process imports the
    metrics (and torch, where a GPU may score) once, started with one thread per library
    (OpenBLAS, MKL and torch read their variables when they load), and forks each scoring
    process from that state, so they start at once. The command's process need not import
    torch at all to hand out the tracks, and a fork of a process that has run no OpenMP
    threads is safe. Elsewhere they are spawned.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD + ([] if no_gpu_here() else GPU_PRELOAD))
    return context


def start_scoring_server() -> None:
    """Start the fork server of the scoring processes now, so that its imports (seconds)
    overlap this process's own start-up; ``sepkit eval workers=N`` calls it first thing."""
    context = scoring_context()
    if context.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        with one_thread_per_library():
            forkserver.ensure_running()

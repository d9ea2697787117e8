"""The worker pool of ``sepkit eval workers=N``: processes of one thread each scoring tracks
while this process hands them out (and separates the next one)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from sepkit.evaluate.scoring import TrackJob, TrackResult, score_track

__all__ = ["THREAD_VARIABLES", "ScoringPool", "one_thread_per_library"]

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Fresh interpreters: safe whatever threads this process runs (torch's, when it separates),
# the same on every platform, and they read the thread variables as they load numpy.
START_METHOD = "spawn"


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


def _start_worker() -> None:
    """A scoring process: torch, if a track needs it (speech on a GPU), on one thread too
    (several processes share the cores)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


class ScoringPool:
    """Scores TrackJobs here (``workers=1``) or in ``workers`` processes of one thread each.

    The processes start when the pool is entered and live until it is left.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._stack = contextlib.ExitStack()
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ScoringPool:
        if self.workers > 1:
            # the environment of every process the pool starts, whenever it starts one
            self._stack.enter_context(one_thread_per_library())
            context = multiprocessing.get_context(START_METHOD)
            self._pool = self._stack.enter_context(
                ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def score(self, jobs: Iterable[TrackJob]) -> Iterator[TrackResult]:
        """Score every job, yielding each result in this process as it is ready. At most
        ``workers`` jobs wait at a time, so the jobs' producer (separation) stays at most
        that far ahead and memory stays bounded."""
        if self._pool is None:
            for job in jobs:
                yield score_track(job)
            return
        pending: set[Future] = set()
        try:
            for job in jobs:
                while len(pending) >= self.workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
                pending.add(self._pool.submit(score_track, job))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        finally:
            for future in pending:
                future.cancel()

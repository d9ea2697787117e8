"""BSSEval's filter systems: the block Levinson recursion against a dense factorisation.

For each system size of sepkit.metrics.bsseval (P signals of 512 taps: P * 512 unknowns),
times on this machine, one thread, numpy and scipy as `sepkit eval` runs them on the CPU:

- the recursion with its refinement steps (levinson.block_levinson, then resolves of the
  residual), as levinson.levinson_filters runs it, over `batch` systems at once;
- the dense Gram matrix built and solved by Cholesky, one system after the other, as
  dense.solve_shifted_gram does.

DENSE_MAX_UNKNOWNS in sepkit/metrics/bsseval/filters.py is chosen from these figures. The signals
are white noise rounded to 16 bits, 10 s long (the time does not depend on the values).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/eval_solvers.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from sepkit.metrics import arrays
from sepkit.metrics.bsseval import correlations, dense, levinson

TAPS = 512
SAMPLES = 10 * 44100
SIZES = [(1, 4), (2, 2), (2, 4), (4, 1), (8, 1)]  # (signals per system, systems)


def seconds(function: Callable[[], object], repeats: int = 5) -> float:
    function()  # warm-up: allocations, caches
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def recursion_and_refinement(lags: np.ndarray, rhs: np.ndarray) -> None:
    size = lags.shape[-1]
    with_probe = np.concatenate([rhs, rhs[..., :1]], axis=3)
    solution, _, resolve = levinson.block_levinson(lags, with_probe)
    filters = solution[..., :size]
    for _ in range(levinson.REFINEMENT_STEPS):
        filters += resolve(rhs - levinson.block_toeplitz_product(lags, filters))
    levinson.block_toeplitz_product(lags, filters)  # the residual check


def factorised(lags_of_all: np.ndarray, blocks: list[slice], rhs: np.ndarray) -> None:
    for b in blocks:
        gram = correlations.gram_matrix(lags_of_all[b, b])
        arrays.add_to_diagonal(gram, correlations.EPS)
        dense.solve_shifted_gram(gram, rhs)


def main() -> None:
    rng = np.random.default_rng(0)
    for size, batch in SIZES:
        signals = np.round(rng.standard_normal((size * batch, SAMPLES)) * 3000) / 32768
        lags_of_all = correlations.lagged_correlations(signals, size * batch, TAPS)
        blocks = [slice(b * size, (b + 1) * size) for b in range(batch)]
        lags = np.stack([lags_of_all[b, b].transpose(2, 0, 1) for b in blocks])
        rhs = rng.standard_normal((batch, TAPS, size, size))
        recursion = seconds(lambda: recursion_and_refinement(lags, rhs))  # noqa: B023 (called right here)
        factorisation = seconds(
            lambda: factorised(lags_of_all, blocks, rhs[0].reshape(TAPS * size, size))  # noqa: B023
        )
        print(
            f"{batch} system(s) of {size * TAPS} unknowns: Levinson and refinement "
            f"{recursion * 1000:.0f} ms, dense Cholesky {factorisation * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()

"""Matching estimates to references when sources have no order (speakers): the assignment
with the smallest total cost, for permutation-invariant training and for evaluation."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linear_sum_assignment

from sepkit.metrics import arrays
from sepkit.metrics.arrays import Array

__all__ = ["best_permutation"]


def _all_permutations(nb_sources: int, like: Array) -> Array:
    """(nb_sources!, nb_sources) int64, one permutation per row, where ``like`` is."""
    rows = np.array(list(itertools.permutations(range(nb_sources))), dtype=np.int64)
    return arrays.on_device_of(like, rows.reshape(-1, nb_sources))


def best_permutation(costs: Array, max_exhaustive_sources: int = 3) -> Array:
    """The assignment of estimates to references with the smallest summed cost.

    Args:
        costs: (..., sources, sources) numpy array or tensor, the cost of estimate i for
            reference j at [..., i, j] (a loss; a score to maximise, negated).
        max_exhaustive_sources: up to this many sources every permutation is tried (S! of
            them, at once, where ``costs`` is); above, the Hungarian algorithm
            (``scipy.optimize.linear_sum_assignment``, polynomial time, on the CPU). Both
            find the same optimum.

    Returns:
        (..., sources) int64, as ``costs`` is (numpy array, or tensor on its device):
        ``permutation[..., j]`` is the estimate matched to reference j, so indexing the
        estimates with it puts them in reference order. No gradient flows through it.
    """
    shape = tuple(costs.shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(
            f"costs of shape {shape}: expected (..., sources, sources) with as many "
            "estimates as references"
        )
    nb_sources = shape[-1]
    tensor = arrays.is_tensor(costs)
    if tensor:
        costs = costs.detach()
    if nb_sources <= max_exhaustive_sources:
        permutations = _all_permutations(nb_sources, costs)  # (P, S)
        references = arrays.on_device_of(costs, np.arange(nb_sources))
        # total[..., p] = sum_j costs[..., permutations[p, j], j]
        total = costs[..., permutations, references].sum(-1)
        return permutations[total.argmin(-1)]
    # float64 holds every float dtype's values exactly (numpy has no bfloat16)
    matrices = arrays.to_numpy(costs.double() if tensor else costs).astype(np.float64)
    matrices = matrices.reshape(-1, nb_sources, nb_sources)
    permutation = np.empty((len(matrices), nb_sources), dtype=np.int64)
    for index, matrix in enumerate(matrices):
        estimates, references = linear_sum_assignment(matrix)
        permutation[index, references] = estimates
    return arrays.on_device_of(costs, permutation.reshape(shape[:-1]))

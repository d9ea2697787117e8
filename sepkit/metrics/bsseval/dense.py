"""Dense solvers of the filter systems: Cholesky (LU, then least squares, where it fails, as
museval does), and a cheap estimate of the condition number from the factorisation."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import numpy as np
from scipy.linalg import lapack

from sepkit.metrics import arrays
from sepkit.metrics.arrays import Array
from sepkit.metrics.bsseval.correlations import EPS

__all__ = ["solve_shifted_gram"]


def _cholesky_solver(matrix: Array) -> Callable[[Array], Array] | None:
    """Cholesky factorisation of one symmetric (n, n) matrix -> its solver, or None when it
    fails (the matrix is not numerically positive definite).

    On CPU LAPACK's potrf is called through scipy with ``clean=0``: numpy's and torch's
    Cholesky also zero the factor's other triangle, a pass over the whole matrix that
    potrs, which never reads that triangle, does not need.
    """
    if not isinstance(matrix, np.ndarray):
        torch = sys.modules["torch"]
        factor, info = torch.linalg.cholesky_ex(matrix)
        if int(info) != 0:
            return None

        def solve(rhs: Array) -> Array:
            # two triangular solves: torch.cholesky_solve copies the factor on every call
            lower = torch.linalg.solve_triangular(factor, rhs, upper=False)
            return torch.linalg.solve_triangular(factor.mT, lower, upper=True)

        return solve

    # the transpose of a C-ordered symmetric matrix is itself in Fortran order: no copy
    factor, info = lapack.dpotrf(matrix.T, lower=1, clean=0)
    if info != 0:
        return None

    def solve(rhs: np.ndarray) -> np.ndarray:
        solution, _ = lapack.dpotrs(factor, np.asfortranarray(rhs), lower=1)
        return np.ascontiguousarray(solution)

    return solve


def solve_shifted_gram(shifted_matrix: Array, right_hand_sides: Array) -> tuple[Array, Array]:
    """Solve (G + eps I) X = B for symmetric positive semi-definite G, batched.

    Args:
        shifted_matrix: (..., n, n) G + eps I, eps the float64 machine epsilon (museval's).
        right_hand_sides: (..., n, k).

    Returns:
        solution: (..., n, k).
        condition: (...,) estimated condition number of G + eps I (inf when singular).

    museval calls np.linalg.solve (LU) and, on an exactly singular matrix, means to fall
    back to np.linalg.lstsq(G, D) (its except clause names np.linalg.linalg, which numpy 2
    removed, so museval 0.4.1 raises AttributeError there instead). G is a Gram matrix, so
    Cholesky gives the same solution at half the cost of LU; where rounding makes it fail
    LU takes over as in museval, then least squares as museval intends.
    """
    if shifted_matrix.ndim > 2:
        # one matrix at a time: batched LU of torch 2.13's MKL hangs on some of these
        # nearly singular matrices when it runs on more than one thread (DLASWP errors)
        solutions, conditions = zip(
            *(solve_shifted_gram(*pair) for pair in zip(shifted_matrix, right_hand_sides))
        )
        library = arrays.library(shifted_matrix)
        return library.stack(solutions), library.stack(conditions)
    solve = _cholesky_solver(shifted_matrix)
    singular = False
    if solve is None:
        solve, singular = _lu_solver(shifted_matrix)
    solution = solve(right_hand_sides)
    condition = _condition_estimate(shifted_matrix, solve)
    if singular:
        # gelsd (SVD) with numpy's default rcond, on the CPU, as museval means to
        matrix = arrays.to_numpy(shifted_matrix).copy()
        arrays.add_to_diagonal(matrix, -EPS)
        fallback = np.linalg.lstsq(matrix, arrays.to_numpy(right_hand_sides), rcond=None)[0]
        solution = arrays.on_device_of(solution, fallback)
        condition = arrays.library(condition).full_like(condition, math.inf)
    return solution, condition


def _lu_solver(matrix: Array) -> tuple[Callable[[Array], Array], bool]:
    """LU factorisation with partial pivoting (museval's np.linalg.solve) of one (n, n)
    matrix -> its solver, and whether the matrix is exactly singular."""
    if isinstance(matrix, np.ndarray):
        factors, pivots, info = lapack.dgetrf(matrix)
        return (lambda rhs: lapack.dgetrs(factors, pivots, rhs)[0]), info != 0
    torch = sys.modules["torch"]
    factors, pivots, info = torch.linalg.lu_factor_ex(matrix)
    return (lambda rhs: torch.linalg.lu_solve(factors, pivots, rhs)), int(info) != 0


def _condition_estimate(
    matrix: Array, solve: Callable[[Array], Array], iterations: int = 4
) -> Array:
    """Rough condition number of one symmetric (n, n) matrix from its factorisation.

    The largest eigenvalue is bounded by the largest absolute row sum; the smallest is
    estimated by a few steps of inverse iteration (cheap: the factorisation exists).
    """
    library = arrays.library(matrix)
    vector = arrays.random_normal(matrix, (matrix.shape[-1], 1))
    for _ in range(iterations):
        vector = solve(vector / library.linalg.vector_norm(vector))
    largest = library.abs(matrix).sum(axis=-1).max()
    return largest * library.linalg.vector_norm(vector)

"""BSSEval v4's distortion filters, solved once over the whole signals: each reference's own
system densely, the system of all references by block Levinson where that pays and can be
trusted, densely elsewhere; a warning where float rounding decides the scores."""

from __future__ import annotations

import warnings

import numpy as np

from sepkit.metrics import arrays
from sepkit.metrics.arrays import Array
from sepkit.metrics.bsseval.correlations import EPS, gram_matrix, lagged_correlations
from sepkit.metrics.bsseval.dense import solve_shifted_gram
from sepkit.metrics.bsseval.levinson import LEVINSON_MAX_CONDITION, levinson_filters

__all__ = ["DENSE_MAX_UNKNOWNS", "ILL_CONDITIONED", "distortion_filters"]

# Rounding errors of float64 (eps ~ 2e-16) move the filters' components along near-null
# directions of G in proportion to its condition number. Those components barely change
# the projection over the whole track but do change it inside 1 s windows, so ISR, SIR and
# SAR carry errors of about ROUNDING_DB_PER_CONDITION * condition dB: measured on generated
# stems as the spread between museval, museval with its sources reordered and this module,
# from 1e-6 dB at 3e10 (16-bit references) through 2e-3 dB at 8e13 (float32 stems) to tens
# of dB at 1e18. Beyond ILL_CONDITIONED that exceeds 1e-3 dB, and bss_eval_v4 warns.
ROUNDING_DB_PER_CONDITION = 3e-17
ILL_CONDITIONED = 3e13
# Systems of at most this many unknowns are factorised densely: there the recursion's ~10
# small operations per lag cost as much as a Cholesky factorisation or more
# (benchmarks/eval_solvers.py; its figures are in benchmarks/README.md).
DENSE_MAX_UNKNOWNS = 1024


def _warn_if_singular(all_condition: float, own_condition: np.ndarray) -> None:
    """Warn that ISR/SIR/SAR are not reproducible when a filter system is nearly singular."""
    affected = []
    if all_condition > ILL_CONDITIONED:
        affected.append("all references")
    bad_sources = np.flatnonzero(own_condition > ILL_CONDITIONED).tolist()
    if bad_sources:
        affected.append(f"reference(s) {bad_sources} alone")
    if affected:
        worst = max(all_condition, float(own_condition.max()))
        warnings.warn(
            f"BSSEval: the filter systems of {' and of '.join(affected)} are ill-conditioned "
            f"(condition number ~{worst:.0e}): ISR, SIR and SAR carry float rounding errors "
            f"of ~{worst * ROUNDING_DB_PER_CONDITION:.0e} dB here, museval's as well. "
            "References with little noise under the signal (float stems of synthetic or "
            "band-limited audio) cause this; 16-bit PCM references such as MUSDB18's do not.",
            stacklevel=4,
        )


def distortion_filters(signals: Array, num_sources: int, filters_len: int) -> tuple[Array, Array]:
    """The v4 distortion filters, solved once over the whole signals.

    Args:
        signals: (2 * S * C, N): the references' S * C channels, then the estimates'.
        num_sources: S.
        filters_len: L, number of filter taps.

    Returns:
        all_sources_filters: (S * C_in, L, S * C_out), the least-squares filters that project
            each estimate on all delayed references.
        own_source_filters: (S, C_in, L, C_out), those that project estimate j on the delayed
            copies of reference j alone.

    museval solves (G + eps I) C = D with G the Gram matrix of the delayed references and D
    their correlations with the estimates, by LU, once per estimate. Here each reference's
    own system (a diagonal block of G, C * L unknowns) is factorised once for all
    estimates. G is block-Toeplitz: the block Levinson recursion solves the system of all
    references in O(L^2 (S C)^3) small steps instead of O(L^3 (S C)^3). It is used where it
    pays (S * C * L above DENSE_MAX_UNKNOWNS) and can be trusted: the diagonal blocks'
    condition numbers are lower bounds of G's (Cauchy's interlacing theorem), so an
    ill-conditioned block sends G straight to a dense factorisation, as does a large
    residual or condition estimate after the recursion.
    """
    num_signals = signals.shape[0] // 2
    num_channels = num_signals // num_sources
    library = arrays.library(signals)
    correlations = lagged_correlations(signals, num_signals, filters_len)
    # g(a)[p, (j, c)] = D[(p, a), (j, c)] = <r_p delayed by a, e_(j, c)>
    reference_estimate = arrays.permute(correlations[:, num_signals:], (2, 0, 1))

    own_grams, own_rhs = [], []
    for source in range(num_sources):
        channels = slice(source * num_channels, (source + 1) * num_channels)
        gram = gram_matrix(correlations[channels, channels])
        arrays.add_to_diagonal(gram, EPS)
        own_grams.append(gram)
        rhs = reference_estimate[:, channels, channels]  # (L, C_in, C_out)
        own_rhs.append(rhs.swapaxes(0, 1).reshape(num_channels * filters_len, num_channels))
    own_filters, own_condition = solve_shifted_gram(
        library.stack(own_grams), library.stack(own_rhs)
    )
    own_filters = own_filters.reshape(num_sources, num_channels, filters_len, num_channels)

    all_filters = None
    if (
        num_signals * filters_len > DENSE_MAX_UNKNOWNS
        and float(own_condition.max()) <= LEVINSON_MAX_CONDITION
    ):
        all_filters, all_condition = levinson_filters(correlations, reference_estimate)
    if all_filters is None:
        gram = gram_matrix(correlations[:, :num_signals])
        arrays.add_to_diagonal(gram, EPS)
        rhs = reference_estimate.swapaxes(0, 1).reshape(num_signals * filters_len, num_signals)
        all_filters, all_condition = solve_shifted_gram(gram, rhs)
        all_filters = all_filters.reshape(num_signals, filters_len, num_signals)
    _warn_if_singular(float(all_condition), arrays.to_numpy(own_condition))
    return all_filters, own_filters

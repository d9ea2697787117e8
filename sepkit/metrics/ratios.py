"""Signal-level metrics: SI-SDR, plain SDR, and their improvement over the mixture.

All functions are batched over leading dimensions, differentiable, and work on any device
and float dtype. si_sdr and sdr also take numpy arrays (and then return them): the scoring
processes of ``sepkit eval`` compute them on the CPU without importing torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["improvement", "sdr", "sdr_improvement", "si_sdr", "si_sdr_improvement"]


def si_sdr(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    zero_mean: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last axis (Le Roux et al., "SDR - half-baked or
    well done?", ICASSP 2019).

    The reference is scaled to best fit the estimate, alpha = <estimate, reference> /
    |reference|^2, and SI-SDR = 10 log10(|alpha reference|^2 / |estimate - alpha reference|^2).
    It does not change when the estimate is scaled, nor when the reference is.

    Args:
        estimate: tensor or numpy array (..., time), e.g. (batch, sources, channels, time).
        reference: same shape as `estimate` (or broadcastable to it).
        zero_mean: remove each signal's mean over time first (as in the paper).
        eps: added to |reference|^2 and to both energies of the ratio, so that silent
            signals give finite values.

    Returns:
        (...,) SI-SDR in dB, one value per signal (per channel for multichannel audio).
    """
    if zero_mean:
        estimate = estimate - estimate.mean(axis=-1, keepdims=True)
        reference = reference - reference.mean(axis=-1, keepdims=True)
    scale = (estimate * reference).sum(axis=-1, keepdims=True) / (
        (reference**2).sum(axis=-1, keepdims=True) + eps
    )
    target = scale * reference
    target_energy = (target**2).sum(axis=-1)
    noise_energy = ((estimate - target) ** 2).sum(axis=-1)
    return 10 * _log10((target_energy + eps) / (noise_energy + eps))


def sdr(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    dim: int | Sequence[int] = (-2, -1),
    eps: float = 1e-7,
) -> torch.Tensor:
    """Plain SDR in dB: 10 log10((sum reference^2 + eps) / (sum (reference - estimate)^2 + eps)).

    This is the "new SDR" of Demucs and of the Music Demixing Challenge 2021 (no distortion
    filters, no windows; by default summed over channels and time of a whole track).

    Args:
        estimate: tensor or numpy array (..., channels, time), e.g. (batch, sources,
            channels, time).
        reference: same shape as `estimate` (or broadcastable to it).
        dim: dimensions summed over (default channels and time).
        eps: added to both energies (Demucs: 1e-7), so that silence gives finite values.

    Returns:
        SDR in dB with `dim` reduced, e.g. (batch, sources).
    """
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    reference_energy = (reference**2).sum(axis=dims)
    error_energy = ((reference - estimate) ** 2).sum(axis=dims)
    return 10 * _log10((reference_energy + eps) / (error_energy + eps))


def _log10(values: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """torch.log10 of a tensor, numpy's of anything else (torch is loaded if a tensor exists)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.is_tensor(values):
        return torch.log10(values)
    return np.log10(values)


def improvement(
    metric: Callable[..., torch.Tensor],
    estimate: torch.Tensor,
    reference: torch.Tensor,
    mixture: torch.Tensor,
    **metric_options: object,
) -> torch.Tensor:
    """metric(estimate, reference) - metric(mixture, reference), in dB.

    The score the separation adds over doing nothing (taking the mixture as the estimate of
    every source): SI-SDRi, SDRi.

    Args:
        metric: si_sdr, sdr, or any function (estimate, reference, **options) -> dB.
        estimate: (batch, sources, channels, time) (or any shape the metric takes).
        reference: same shape as `estimate`.
        mixture: with as many dimensions as `reference`, broadcastable to it, e.g.
            (batch, 1, channels, time) for (batch, sources, channels, time) sources.
        **metric_options: passed to `metric` (e.g. zero_mean, eps, dim).

    Returns:
        The improvement in dB, shaped like metric's output.
    """
    if mixture.ndim != reference.ndim:
        raise ValueError(
            f"mixture has shape {tuple(mixture.shape)} and reference "
            f"{tuple(reference.shape)}: give the mixture as many dimensions, e.g. "
            "mixture.unsqueeze(1) for (batch, sources, channels, time) sources"
        )
    mixture = mixture.expand_as(reference)
    return metric(estimate, reference, **metric_options) - metric(
        mixture, reference, **metric_options
    )


def si_sdr_improvement(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    mixture: torch.Tensor,
    zero_mean: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """SI-SDRi: si_sdr(estimate) - si_sdr(mixture), over the last axis; see `improvement`."""
    return improvement(si_sdr, estimate, reference, mixture, zero_mean=zero_mean, eps=eps)


def sdr_improvement(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    mixture: torch.Tensor,
    dim: int | Sequence[int] = (-2, -1),
    eps: float = 1e-7,
) -> torch.Tensor:
    """SDRi with the plain SDR: sdr(estimate) - sdr(mixture); see `improvement`."""
    return improvement(sdr, estimate, reference, mixture, dim=dim, eps=eps)

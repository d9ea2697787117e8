"""Waveform losses: Demucs's L1, MSE, and negative SI-SDR against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sepkit.losses.waveform import ScaleInvariantSDRLoss, WaveformLoss


def _pair(estimates: torch.Tensor, sources: torch.Tensor):
    return {"waveforms": estimates}, {"waveforms": sources}


@pytest.mark.parametrize(
    "distance,reference", [("l1", torch.nn.L1Loss()), ("mse", torch.nn.MSELoss())]
)
def test_waveform_loss_is_the_mean_over_every_sample(distance, reference):
    estimates, sources = torch.randn(3, 4, 2, 100), torch.randn(3, 4, 2, 100)
    loss = WaveformLoss(distance)(*_pair(estimates, sources))
    torch.testing.assert_close(loss, reference(estimates, sources))


@pytest.mark.parametrize("loss", [WaveformLoss("l1"), ScaleInvariantSDRLoss()])
def test_pairwise_compares_every_estimate_with_every_reference(loss):
    estimates, sources = torch.randn(2, 3, 2, 200), torch.randn(2, 3, 2, 200)
    matrix = loss.pairwise(*_pair(estimates, sources))
    assert matrix.shape == (2, 3, 3)
    torch.testing.assert_close(
        matrix.diagonal(dim1=1, dim2=2), loss.per_source(*_pair(estimates, sources))
    )
    swapped = sources[:, [2, 0, 1]]
    torch.testing.assert_close(matrix[:, :, [2, 0, 1]], loss.pairwise(*_pair(estimates, swapped)))


def test_si_sdr_loss_of_a_scaled_reference_plus_orthogonal_noise():
    time = torch.arange(1000, dtype=torch.float64)
    reference = torch.sin(2 * math.pi * 5 * time / 1000)
    noise = torch.sin(2 * math.pi * 13 * time / 1000)  # orthogonal, zero mean, same energy
    estimate = 3.0 * reference + 0.1 * noise
    expected = 10 * math.log10(3.0**2 / 0.1**2)  # target 3 r against noise 0.1 n
    loss = ScaleInvariantSDRLoss(eps=0.0)
    value = loss(*_pair(estimate.reshape(1, 1, 1, -1), reference.reshape(1, 1, 1, -1)))
    assert float(value) == pytest.approx(-expected)


def test_si_sdr_ignores_scale_and_offset():
    generator = torch.Generator().manual_seed(0)
    sources = torch.randn(2, 2, 1, 500, generator=generator)
    estimates = sources + 0.5 * torch.randn(2, 2, 1, 500, generator=generator)
    loss = ScaleInvariantSDRLoss()
    value = loss(*_pair(estimates, sources))
    for changed in [
        loss(*_pair(0.1 * estimates + 0.05, sources)),
        loss(*_pair(estimates, 5 * sources - 1)),
    ]:
        torch.testing.assert_close(changed, value, rtol=1e-3, atol=1e-3)


def test_si_sdr_is_finite_for_silence_and_perfect_estimates():
    sources = torch.randn(1, 2, 1, 300)
    sources[:, 1] = 0
    estimates = sources.clone().requires_grad_()
    loss = ScaleInvariantSDRLoss()(*_pair(estimates, sources))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(estimates.grad).all()
    assert float(-ScaleInvariantSDRLoss().per_source(*_pair(sources, sources))[0, 0]) > 60


def test_unknown_distance_names_the_choices():
    with pytest.raises(ValueError, match="l1"):
        WaveformLoss("l2")

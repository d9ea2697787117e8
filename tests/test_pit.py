"""Permutation-invariant training: the best assignment of estimates to references."""

from __future__ import annotations

import itertools

import pytest
import torch

from sepkit.losses.pit import (
    PermutationInvariantLoss,
    apply_permutation,
    best_permutation,
    permuted_pairwise,
)
from sepkit.losses.spectrogram import SpectrogramLoss


def _brute_force(pairwise: torch.Tensor) -> torch.Tensor:
    """Smallest summed loss per example over every permutation, by enumeration."""
    nb_sources = pairwise.shape[1]
    best = []
    for matrix in pairwise:
        best.append(
            min(
                sum(float(matrix[permutation[j], j]) for j in range(nb_sources))
                for permutation in itertools.permutations(range(nb_sources))
            )
        )
    return torch.tensor(best, dtype=pairwise.dtype)


@pytest.mark.parametrize("nb_sources", [2, 3, 4])
def test_the_hidden_permutation_of_a_constructed_case_is_found(nb_sources: int):
    # the estimates are the references shuffled, plus a little noise
    generator = torch.Generator().manual_seed(nb_sources)
    references = torch.randn(5, nb_sources, 64, generator=generator)
    shuffle = torch.stack([torch.randperm(nb_sources, generator=generator) for _ in range(5)])
    estimates = apply_permutation(references, shuffle)
    estimates = estimates + 0.01 * torch.randn(estimates.shape, generator=generator)
    # estimate j holds reference shuffle[b, j], so reference i sits at argsort(shuffle)[b, i]
    expected = shuffle.argsort(dim=1)
    pairwise = (estimates[:, :, None] - references[:, None, :]).square().mean(-1)

    permutation = best_permutation(pairwise)

    assert torch.equal(permutation, expected)
    torch.testing.assert_close(
        apply_permutation(estimates, permutation), references, atol=0.05, rtol=0
    )


@pytest.mark.parametrize("nb_sources", [2, 3, 4, 5])
def test_exhaustive_and_hungarian_searches_reach_the_enumerated_minimum(nb_sources: int):
    pairwise = torch.rand(20, nb_sources, nb_sources, generator=torch.Generator().manual_seed(1))
    expected = _brute_force(pairwise)
    for max_exhaustive in (0, 8):  # Hungarian for every size, then exhaustive for every size
        permutation = best_permutation(pairwise, max_exhaustive_sources=max_exhaustive)
        assert sorted(permutation[0].tolist()) == list(range(nb_sources))
        found = permuted_pairwise(pairwise, permutation).sum(1)
        torch.testing.assert_close(found, expected)


def _speech_like(batch: int, nb_sources: int, seed: int = 0) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, nb_sources, 1, 33, 20)
    sources = torch.complex(
        torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    )
    mixture = sources.sum(1)
    estimates = sources.abs() * (1 + 0.1 * torch.rand(shape, generator=generator))
    outputs = {"magnitudes": estimates, "mixture_spectrogram": mixture}
    return outputs, {"spectrograms": sources}


@pytest.mark.parametrize("target", ["magnitude", "truncated_phase_sensitive"])
def test_pit_loss_ignores_the_order_of_the_estimates(target: str):
    loss = PermutationInvariantLoss(SpectrogramLoss(distance="l1", target=target))
    outputs, references = _speech_like(batch=3, nb_sources=3)
    in_order = loss(outputs, references)
    swapped = dict(outputs, magnitudes=outputs["magnitudes"][:, [2, 0, 1]])
    torch.testing.assert_close(loss(swapped, references), in_order)
    # the plain loss on the ordered estimates is the permutation-invariant one's value
    torch.testing.assert_close(SpectrogramLoss("l1", target)(outputs, references), in_order)
    assert SpectrogramLoss("l1", target)(swapped, references) > in_order


def test_pairwise_spectrogram_loss_has_per_source_losses_on_its_diagonal():
    loss = SpectrogramLoss(distance="mse", target="phase_sensitive")
    outputs, references = _speech_like(batch=2, nb_sources=4, seed=3)
    pairwise = loss.pairwise(outputs, references)
    assert pairwise.shape == (2, 4, 4)
    torch.testing.assert_close(
        pairwise.diagonal(dim1=1, dim2=2), loss.per_source(outputs, references)
    )


def test_pit_loss_gradient_reaches_the_estimates():
    loss = PermutationInvariantLoss(SpectrogramLoss(distance="l1"))
    outputs, references = _speech_like(batch=2, nb_sources=2)
    outputs["magnitudes"] = outputs["magnitudes"].clone().requires_grad_()
    loss(outputs, references).backward()
    assert outputs["magnitudes"].grad is not None
    assert outputs["magnitudes"].grad.abs().sum() > 0


def test_a_loss_without_pairwise_is_refused_with_its_name():
    class OnlyScalar(torch.nn.Module):
        reads = ("waveforms",)

    with pytest.raises(ValueError, match="OnlyScalar has no pairwise"):
        PermutationInvariantLoss(OnlyScalar())

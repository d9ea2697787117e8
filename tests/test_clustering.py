"""Deep clustering: the low-rank loss, ideal binary assignments, k-means and its masks."""

from __future__ import annotations

import pytest
import torch

from sepkit.blocks.embedding import BinEmbedding
from sepkit.blocks.kmeans import cluster_memberships, kmeans
from sepkit.blocks.log_magnitude import LogMagnitude
from sepkit.losses.clustering import (
    ChimeraLoss,
    DeepClusteringLoss,
    deep_clustering_loss,
    ideal_binary_assignments,
)
from sepkit.losses.pit import PermutationInvariantLoss
from sepkit.losses.spectrogram import SpectrogramLoss


def _direct_loss(embeddings, assignments, weights):
    """Σ_ij w_i w_j ((V Vᵀ)_ij - (Y Yᵀ)_ij)² / (Σ w)², building the bins x bins matrices."""
    affinity = embeddings @ embeddings.transpose(1, 2)
    target = assignments @ assignments.transpose(1, 2)
    pair_weights = weights[:, :, None] * weights[:, None, :]
    total = (pair_weights * (affinity - target).square()).sum(dim=(1, 2))
    return total / weights.sum(1).square()


@pytest.mark.parametrize("weighted", [False, True])
def test_low_rank_loss_equals_the_affinity_matrix_formula(weighted: bool):
    generator = torch.Generator().manual_seed(0)
    batch, bins, dim, sources = 3, 300, 20, 3
    embeddings = torch.nn.functional.normalize(
        torch.randn(batch, bins, dim, generator=generator, dtype=torch.float64), dim=-1
    )
    labels = torch.randint(sources, (batch, bins), generator=generator)
    assignments = torch.nn.functional.one_hot(labels, sources).double()
    weights = torch.rand(batch, bins, generator=generator, dtype=torch.float64)
    if weighted:
        weights[:, :50] = 0.0  # silent bins
    else:
        weights = torch.ones_like(weights)

    low_rank = deep_clustering_loss(embeddings, assignments, weights if weighted else None)

    torch.testing.assert_close(
        low_rank, _direct_loss(embeddings, assignments, weights), rtol=1e-10, atol=1e-12
    )


def test_loss_is_zero_for_embeddings_that_are_the_assignments_and_grows_otherwise():
    labels = torch.randint(2, (2, 500), generator=torch.Generator().manual_seed(1))
    assignments = torch.nn.functional.one_hot(labels, 2).float()
    perfect = torch.nn.functional.pad(assignments, (0, 18))  # 20-dim, one axis per source
    assert deep_clustering_loss(perfect, assignments).abs().max() < 1e-6
    # swapping which axis means which source changes nothing: the loss has no order
    swapped = torch.nn.functional.pad(assignments.flip(-1), (0, 18))
    assert deep_clustering_loss(swapped, assignments).abs().max() < 1e-6
    everything_alike = torch.zeros_like(perfect)
    everything_alike[..., 0] = 1.0
    torch.testing.assert_close(
        deep_clustering_loss(everything_alike, assignments).max(),
        torch.tensor(0.5),
        atol=0.05,
        rtol=0,
    )


def test_ideal_binary_assignments_pick_the_loudest_source_in_bin_order():
    spectrograms = torch.zeros(1, 2, 1, 3, 2, dtype=torch.complex64)  # (batch, S, C, F, T)
    spectrograms[0, 0, 0, :, 0] = 1.0  # source 0 loud in frame 0
    spectrograms[0, 1, 0, :, 1] = 2j  # source 1 loud in frame 1
    assignments = ideal_binary_assignments(spectrograms)
    # bins flattened as (channels, freq, frames): frame index varies fastest
    assert assignments.shape == (1, 6, 2)
    assert assignments[0].argmax(-1).tolist() == [0, 1, 0, 1, 0, 1]


def test_silent_bins_carry_no_weight():
    mixture = torch.ones(1, 1, 4, 5, dtype=torch.complex64)
    mixture[..., 0] = 1e-3  # 60 dB below the rest
    loss = DeepClusteringLoss(weighting="none", silence_db=40.0)
    weights = loss.bin_weights(mixture).reshape(4, 5)
    assert torch.all(weights[:, 0] == 0) and torch.all(weights[:, 1:] == 1)
    assert torch.all(DeepClusteringLoss("magnitude", None).bin_weights(mixture) > 0)


def test_chimera_loss_is_the_weighted_sum_and_reads_both_heads():
    generator = torch.Generator().manual_seed(2)
    shape = (2, 2, 1, 9, 7)
    sources = torch.complex(
        torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
    )
    mixture = sources.sum(1)
    outputs = {
        "magnitudes": torch.rand(shape, generator=generator),
        "embeddings": torch.nn.functional.normalize(
            torch.randn(2, 63, 20, generator=generator), dim=-1
        ),
        "mixture_spectrogram": mixture,
    }
    references = {"spectrograms": sources}
    mask_loss = PermutationInvariantLoss(SpectrogramLoss("l1", "truncated_phase_sensitive"))
    clustering_loss = DeepClusteringLoss()
    chimera = ChimeraLoss(mask_loss, clustering_loss, mask_weight=0.3, clustering_weight=2.0)
    expected = 0.3 * mask_loss(outputs, references) + 2.0 * clustering_loss(outputs, references)
    torch.testing.assert_close(chimera(outputs, references), expected)
    assert set(chimera.reads) == {"magnitudes", "mixture_spectrogram", "embeddings"}


def _blobs(seed: int = 0):
    """Three tight blobs in 4-D per example, with different sizes per example, and far
    outliers of weight 0 that must not pull any centroid."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    examples, weights, labels = [], [], []
    for sizes in ([50, 80, 20], [30, 30, 90]):
        label = torch.cat([torch.full((size,), index) for index, size in enumerate(sizes)])
        points = centres[label] + 0.1 * torch.randn(len(label), 4, generator=generator)
        outliers = torch.full((10, 4), 100.0)
        examples.append(torch.cat([points, outliers]))
        weights.append(torch.cat([torch.ones(len(label)), torch.zeros(10)]))
        labels.append(label)
    return torch.stack(examples), torch.stack(weights), labels, centres


@pytest.mark.parametrize("init", ["kmeans++", "farthest"])
def test_kmeans_finds_the_blobs_of_each_example(init: str):
    points, weights, labels, centres = _blobs()
    centroids, assignments = kmeans(points, 3, weights=weights, init=init, seed=3)
    for example in range(2):
        # every centroid sits on one blob; match them up by nearest centre
        nearest = torch.cdist(centroids[example], centres).argmin(1)
        assert sorted(nearest.tolist()) == [0, 1, 2]
        torch.testing.assert_close(centroids[example], centres[nearest], atol=0.05, rtol=0)
        found = nearest[assignments[example, : len(labels[example])]]
        assert torch.equal(found, labels[example])


def test_kmeans_is_deterministic_by_seed():
    points = torch.randn(2, 400, 5, generator=torch.Generator().manual_seed(4))
    first = kmeans(points, 4, seed=7, iterations=3)
    again = kmeans(points, 4, seed=7, iterations=3)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], kmeans(points, 4, seed=8, iterations=3)[0])


def test_kmeans_survives_an_example_without_any_weight():
    points = torch.randn(2, 50, 3, generator=torch.Generator().manual_seed(5))
    weights = torch.ones(2, 50)
    weights[1] = 0.0  # a silent mixture: no loud bins
    centroids, assignments = kmeans(points, 2, weights=weights)
    assert torch.isfinite(centroids).all() and assignments.shape == (2, 50)


def test_memberships_sum_to_one_soft_or_binary():
    points, _, _, centres = _blobs()
    centroids = centres.expand(2, 3, 4)
    soft = cluster_memberships(points, centroids, soft=True, beta=5.0)
    binary = cluster_memberships(points, centroids, soft=False)
    torch.testing.assert_close(soft.sum(-1), torch.ones(2, points.shape[1]))
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(binary.argmax(-1), soft.argmax(-1))
    # beta sharpens: a point on a blob belongs to it almost entirely
    assert soft[0, 0].max() > 0.99


def test_bin_embedding_gives_unit_vectors_per_bin():
    for activation in ("sigmoid", "tanh", "none"):
        block = BinEmbedding(input_size=8, nb_bins=5, embedding_dim=20, activation=activation)
        embeddings = block(torch.randn(2, 7, 8))
        assert embeddings.shape == (2, 7, 5, 20)
        torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2, 7, 5))
    assert (BinEmbedding(8, 5, 20, "sigmoid")(torch.randn(3, 8)) >= 0).all()


def test_log_magnitude_in_decibels_has_a_floor():
    block = LogMagnitude("db", floor=1e-10)
    values = block(torch.tensor([0.0, 1.0, 10.0]))
    torch.testing.assert_close(values, torch.tensor([-100.0, 0.0, 20.0]), atol=1e-4, rtol=0)
    assert block.silence == -100.0
    torch.testing.assert_close(LogMagnitude("log1p")(torch.tensor([0.0])), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="use one of"):
        LogMagnitude("ln")

"""k-means clustering in torch, batched over examples, and cluster memberships.

Deep clustering separates by clustering the embeddings of a mixture's time-frequency bins
(one cluster per source) and turning each bin's distance to the centroids into masks. Each
example of a batch is clustered on its own, all at once on the tensor's device; ``weights``
choose (0 or 1) or weigh the points of each example, so examples with different numbers
of loud bins share one tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

INITIALISATIONS = ("kmeans++", "farthest")


def squared_distances(points: Tensor, centroids: Tensor) -> Tensor:
    """(batch, points, dim) and (batch, clusters, dim) -> (batch, points, clusters)."""
    cross = points @ centroids.transpose(1, 2)
    squared = (
        points.square().sum(-1, keepdim=True) - 2 * cross + centroids.square().sum(-1)[:, None]
    )
    return squared.clamp_min(0.0)


def _initial_centroids(
    points: Tensor, weights: Tensor, nb_clusters: int, init: str, generator: torch.Generator
) -> Tensor:
    """(batch, clusters, dim) seeds, each one of the example's points with nonzero weight.

    ``kmeans++`` (Arthur & Vassilvitskii 2007): the first seed drawn in proportion to the
    weights, each next one in proportion to weight x squared distance to the nearest seed.
    ``farthest``: deterministic, the heaviest point first, then each time the point that
    maximises weight x squared distance.
    """
    batch, nb_points, _ = points.shape
    rows = torch.arange(batch, device=points.device)
    # an example whose weights are all zero (digital silence) picks among all its points
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
    chosen = []
    score = weights
    nearest = torch.full((batch, nb_points), float("inf"), device=points.device)
    for _ in range(nb_clusters):
        if init == "kmeans++":
            # rows of zeros (every positive-weight point already a seed) fall back to weights
            usable = torch.where(score.sum(1, keepdim=True) > 0, score, weights)
            index = torch.multinomial(usable, 1, generator=generator).squeeze(1)
        else:
            index = score.argmax(dim=1)
        centroid = points[rows, index]  # (batch, dim)
        chosen.append(centroid)
        distance = (points - centroid[:, None]).square().sum(-1)
        nearest = torch.minimum(nearest, distance)
        score = weights * nearest
    return torch.stack(chosen, dim=1)


def kmeans(
    points: Tensor,
    nb_clusters: int,
    weights: Tensor | None = None,
    iterations: int = 30,
    tolerance: float = 1e-5,
    init: str = "kmeans++",
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Weighted k-means (Lloyd's algorithm) of each example's points.

    Args:
        points: (batch, points, dim).
        nb_clusters: clusters per example.
        weights: (batch, points), non-negative; a point of weight 0 takes no part in
            seeding or in the centroids (it still gets an assignment). None: all 1.
        iterations: at most this many updates of the assignments and centroids.
        tolerance: stop earlier when no centroid moved by more than this (Euclidean).
        init: ``kmeans++`` (random, drawn from a generator seeded by ``seed``) or
            ``farthest`` (deterministic).
        seed: the seed of the k-means++ draws; the same inputs and seed give the same
            clusters.

    Returns:
        centroids (batch, nb_clusters, dim) and assignments (batch, points) long, the
        nearest centroid of every point. A cluster that loses all its points keeps its
        previous centroid.
    """
    if init not in INITIALISATIONS:
        raise ValueError(f"unknown k-means init {init!r}: use one of {list(INITIALISATIONS)}")
    if points.ndim != 3:
        raise ValueError(f"k-means points of shape {tuple(points.shape)}: expected (batch, n, dim)")
    points = points.detach().float()
    if weights is None:
        weights = torch.ones(points.shape[:2], device=points.device)
    weights = weights.detach().float().clamp_min(0.0)
    generator = torch.Generator(device=points.device)
    generator.manual_seed(seed)

    centroids = _initial_centroids(points, weights, nb_clusters, init, generator)
    for _ in range(iterations):
        assignments = squared_distances(points, centroids).argmin(dim=-1)
        membership = torch.nn.functional.one_hot(assignments, nb_clusters).float()
        membership = membership * weights.unsqueeze(-1)  # (batch, points, clusters)
        mass = membership.sum(1)  # (batch, clusters)
        sums = membership.transpose(1, 2) @ points  # (batch, clusters, dim)
        updated = torch.where(
            mass.unsqueeze(-1) > 0, sums / mass.clamp_min(1e-12).unsqueeze(-1), centroids
        )
        shift = (updated - centroids).norm(dim=-1).max()
        centroids = updated
        if float(shift) <= tolerance:
            break
    assignments = squared_distances(points, centroids).argmin(dim=-1)
    return centroids, assignments


def cluster_memberships(
    points: Tensor, centroids: Tensor, soft: bool = True, beta: float = 5.0
) -> Tensor:
    """How much each point belongs to each cluster: (batch, points, clusters), summing to
    one over clusters.

    Soft: ``softmax(-beta * distance)`` over the clusters, with Euclidean distances to the
    centroids (nussl's soft clustering masks, beta 5); binary: one for the nearest
    centroid, zero elsewhere.
    """
    squared = squared_distances(points.float(), centroids.float())
    if soft:
        return torch.softmax(-beta * squared.sqrt(), dim=-1)
    return torch.nn.functional.one_hot(squared.argmin(-1), centroids.shape[1]).float()

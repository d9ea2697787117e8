"""Deep clustering loss and Chimera's sum of a clustering and a mask loss.

Deep clustering (Hershey et al., ICASSP 2016) trains unit-norm embeddings V (one row per
time-frequency bin) so that their affinities V Vᵀ match those of the ideal binary
assignments Y (one-hot rows: the loudest source in each bin):

    ‖V Vᵀ - Y Yᵀ‖²_F  =  ‖VᵀV‖²_F - 2 ‖VᵀY‖²_F + ‖YᵀY‖²_F.

The right-hand side needs only (dim x dim), (dim x sources) and (sources x sources)
products, never the (bins x bins) affinity matrices. With a weight w_i per bin the loss is
Σ_ij w_i w_j (v_i·v_j - y_i·y_j)², the same identity with VᵀWV, VᵀWY and YᵀWY
(W = diag(w)); it is divided by (Σ_i w_i)², which makes it a weighted mean over pairs of
bins that does not grow with the number of bins: 0 when the affinities match, at most 1
for non-negative (sigmoid) embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sepkit.losses.base import SeparationLoss

WEIGHTINGS = ("none", "magnitude")


def ideal_binary_assignments(source_spectrograms: Tensor) -> Tensor:
    """One-hot of the loudest source per bin: (batch, channels * freq * frames, sources)
    from source spectrograms (batch, sources, channels, freq, frames), bins in the order of
    (channels, freq, frames) flattened, as the models' ``embeddings``."""
    loudest = source_spectrograms.abs().argmax(dim=1)  # (batch, channels, freq, frames)
    nb_sources = source_spectrograms.shape[1]
    return torch.nn.functional.one_hot(loudest.flatten(1), nb_sources).float()


def deep_clustering_loss(
    embeddings: Tensor, assignments: Tensor, weights: Tensor | None = None
) -> Tensor:
    """The weighted deep clustering loss of each example, in its low-rank form.

    Args:
        embeddings: V (batch, bins, dim), unit-norm rows.
        assignments: Y (batch, bins, sources), one-hot (or any) rows.
        weights: w (batch, bins) non-negative; None weighs every bin 1.

    Returns:
        (batch,) Σ_ij w_i w_j (v_i·v_j - y_i·y_j)² / (Σ_i w_i)².
    """
    # at least float32 (half-precision Gram matrices of thousands of bins lose the loss)
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    embeddings = embeddings.to(dtype)
    assignments = assignments.to(dtype)
    if weights is None:
        weights = torch.ones(embeddings.shape[:2], device=embeddings.device)
    weights = weights.to(dtype)
    weighted_embeddings = embeddings * weights.unsqueeze(-1)
    weighted_assignments = assignments * weights.unsqueeze(-1)
    embedding_gram = embeddings.transpose(1, 2) @ weighted_embeddings  # VᵀWV (dim, dim)
    cross = embeddings.transpose(1, 2) @ weighted_assignments  # VᵀWY (dim, sources)
    assignment_gram = assignments.transpose(1, 2) @ weighted_assignments  # YᵀWY
    squared_norm = lambda matrix: matrix.square().sum(dim=(1, 2))  # noqa: E731
    loss = squared_norm(embedding_gram) - 2 * squared_norm(cross) + squared_norm(assignment_gram)
    return loss / weights.sum(1).square().clamp_min(1e-12)


def anchor_loss(
    embeddings: Tensor, anchors: Tensor, assignments: Tensor, weights: Tensor
) -> Tensor:
    """How far each bin's embedding lies from the anchor of the source that dominates it:
    (batch,) Σ_i w_i ‖v_i - a_(y_i)‖² / Σ_i w_i, for embeddings (batch, bins, dim), anchors
    (batch, sources, dim), one-hot assignments (batch, bins, sources) and weights (batch,
    bins). Its minimum over the anchors is each source's weighted mean embedding, so the
    anchors learn where each named stem's bins cluster."""
    dtype = torch.promote_types(embeddings.dtype, torch.float32)
    own_anchor = assignments.to(dtype) @ anchors.to(dtype)  # (batch, bins, dim)
    distances = (embeddings.to(dtype) - own_anchor).square().sum(-1)
    weights = weights.to(dtype)
    return (weights * distances).sum(1) / weights.sum(1).clamp_min(1e-12)


class DeepClusteringLoss(SeparationLoss):
    """The deep clustering loss of the model's ``embeddings`` against the ideal binary
    assignments of the reference ``spectrograms``, averaged over the batch.

    ``weighting``: ``none`` (every bin alike) or ``magnitude`` (bin i weighs |X_i|, the
    mixture magnitude: nussl scales V and Y by sqrt(|X| / mean |X|), the same pair weights
    up to the normalisation). ``silence_db``: bins more than this many dB below the
    loudest bin of their mixture get weight 0 (Asteroid's 40 dB voice activity mask);
    None keeps every bin. When the model gives ``anchors`` (trained on named stems), the
    ``anchor_loss`` of the embeddings to their stems' anchors is added.
    """

    reads = ("embeddings", "mixture_spectrogram")

    def __init__(self, weighting: str = "magnitude", silence_db: float | None = 40.0) -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"loss.weighting={weighting!r}: use one of {list(WEIGHTINGS)}")
        self.weighting = weighting
        self.silence_db = silence_db

    def fit_sources(self, ordered: bool) -> None:
        """Any sources: the affinities of the assignments do not depend on their order."""

    def bin_weights(self, mixture_spectrogram: Tensor) -> Tensor:
        """(batch, channels * freq * frames) weights from the complex mixture spectrogram
        (batch, channels, freq, frames)."""
        magnitude = mixture_spectrogram.abs().flatten(1).float()
        weights = magnitude if self.weighting == "magnitude" else torch.ones_like(magnitude)
        if self.silence_db is not None:
            loudest = magnitude.amax(dim=1, keepdim=True)
            active = magnitude > loudest * 10 ** (-self.silence_db / 20)
            weights = weights * active
        return weights

    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        assignments = ideal_binary_assignments(references["spectrograms"])
        weights = self.bin_weights(outputs["mixture_spectrogram"])
        loss = deep_clustering_loss(outputs["embeddings"], assignments, weights)
        if "anchors" in outputs:
            loss = loss + anchor_loss(
                outputs["embeddings"], outputs["anchors"], assignments, weights
            )
        return loss.mean()


class ChimeraLoss(SeparationLoss):
    """``mask_weight * mask_loss + clustering_weight * clustering_loss`` (Luo et al.,
    ICASSP 2017: a mask-inference and a deep-clustering head trained together).

    ``mask_loss`` is typically a ``PermutationInvariantLoss`` around a spectrogram loss,
    ``clustering_loss`` a ``DeepClusteringLoss``; the loss reads what either reads.
    """

    def __init__(
        self,
        mask_loss: SeparationLoss,
        clustering_loss: SeparationLoss,
        mask_weight: float = 1.0,
        clustering_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.mask_loss = mask_loss
        self.clustering_loss = clustering_loss
        self.mask_weight = mask_weight
        self.clustering_weight = clustering_weight
        self.reads = tuple(dict.fromkeys((*mask_loss.reads, *clustering_loss.reads)))

    def fit_sources(self, ordered: bool) -> None:
        self.mask_loss.fit_sources(ordered)
        self.clustering_loss.fit_sources(ordered)

    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        return self.mask_weight * self.mask_loss(
            outputs, references
        ) + self.clustering_weight * self.clustering_loss(outputs, references)

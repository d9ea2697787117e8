"""Permutation-invariant training (PIT): one wrapper around any pairwise loss.

Speakers in a mixture have no fixed order, so a loss must compare each estimate with the
reference it matches best. ``PermutationInvariantLoss`` asks the wrapped loss for the
loss between every estimate and every reference (its ``pairwise`` method, a (batch,
estimates, references) tensor), finds per example the assignment of estimates to
references with the smallest mean loss and returns that mean, averaged over the batch
(Yu et al., ICASSP 2017, utterance-level PIT; Kolbæk et al., TASLP 2017).

The search is ``sepkit.metrics.permutation.best_permutation``, which evaluation uses too:
exhaustive over the S! permutations for up to ``max_exhaustive_sources`` sources, the
Hungarian algorithm above; both find the same optimum, the second in polynomial time.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from sepkit.losses.base import SeparationLoss
from sepkit.metrics.permutation import best_permutation

__all__ = [
    "PairwiseLoss",
    "PermutationInvariantLoss",
    "apply_permutation",
    "best_permutation",
    "permuted_pairwise",
]


WHEN = ("always", "unordered")


class PairwiseLoss(Protocol):
    """A loss that can score every estimate against every reference."""

    reads: tuple[str, ...]

    def pairwise(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """(batch, estimates, references): the loss of estimate i against reference j."""
        ...


def apply_permutation(tensor: Tensor, permutation: Tensor) -> Tensor:
    """Reorder dimension 1 of ``tensor`` (batch, sources, ...) per example:
    ``result[b, j] = tensor[b, permutation[b, j]]``."""
    batch = torch.arange(tensor.shape[0], device=tensor.device).unsqueeze(1)
    return tensor[batch, permutation.to(tensor.device)]


def permuted_pairwise(pairwise: Tensor, permutation: Tensor) -> Tensor:
    """(batch, sources): the loss of each reference against its assigned estimate."""
    gathered = pairwise.gather(1, permutation.to(pairwise.device).unsqueeze(1))
    return gathered.squeeze(1)


class PermutationInvariantLoss(SeparationLoss):
    """``loss`` under the best assignment of estimates to references, per example.

    ``loss`` is any loss with a ``pairwise(outputs, references)`` method (spectrogram,
    waveform, ...); this wrapper reads what it reads. The value is the mean over the
    batch of the mean over sources of the pairwise loss under each example's best
    permutation. ``max_exhaustive_sources``: largest source count searched exhaustively
    (S! permutations); more sources use the Hungarian algorithm.

    ``when``: ``always`` (the sources must have no order: PIT on named stems would let an
    estimate stand for any of them) or ``unordered`` (permutation-invariant on sources
    without order, e.g. speakers; on named stems each estimate is compared with its own
    stem, the wrapped loss as it is). Training says which through ``fit_sources``.
    """

    def __init__(
        self, loss: SeparationLoss, max_exhaustive_sources: int = 3, when: str = "always"
    ) -> None:
        super().__init__()
        if when not in WHEN:
            raise ValueError(f"loss.when={when!r}: use one of {list(WHEN)}")
        if not callable(getattr(loss, "pairwise", None)):
            raise ValueError(
                f"loss.loss={type(loss).__name__} has no pairwise(outputs, references) method: "
                "permutation-invariant training needs the loss of every estimate against "
                "every reference"
            )
        self.loss = loss
        self.reads = tuple(loss.reads)
        self.max_exhaustive_sources = max_exhaustive_sources
        self.when = when
        self.permutes = True

    def fit_sources(self, ordered: bool) -> None:
        if ordered and self.when == "always":
            raise ValueError(
                "a permutation-invariant loss would let any estimate stand for any of these "
                "named stems: use a loss that keeps their order (or loss.when=unordered)"
            )
        self.permutes = not ordered

    def pairwise(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """The wrapped loss's (batch, estimates, references) matrix."""
        return self.loss.pairwise(outputs, references)

    def best_permutation(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        """(batch, sources): the estimate assigned to each reference (see
        ``best_permutation``)."""
        return best_permutation(self.pairwise(outputs, references), self.max_exhaustive_sources)

    def forward(self, outputs: dict[str, Tensor], references: dict[str, Tensor]) -> Tensor:
        if not self.permutes:
            return self.loss(outputs, references)
        pairwise = self.pairwise(outputs, references)
        permutation = best_permutation(pairwise, self.max_exhaustive_sources)
        return permuted_pairwise(pairwise, permutation).mean()

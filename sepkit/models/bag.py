"""A bag of models: several separators of the same targets, averaged per target.

Demucs publishes some of its models this way (``htdemucs_ft``: four fine-tuned copies of
HTDemucs, each kept for one stem). Each model separates the whole mixture; target ``k`` of
the bag is ``sum_i weights[i][k] * estimate_i[k] / sum_i weights[i][k]``, as demucs's
``BagOfModels`` with ``apply_model``. One-hot weights pick each target from one model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor, nn

from sepkit.errors import SepkitError
from sepkit.models.base import InferenceOptions, SeparationModel


class BagOfModels(SeparationModel):
    """Models with the same targets, sample rate and channels; each target a weighted mean.

    ``weights[i][k]`` is model ``i``'s weight for target ``k`` (default: all ones, a plain
    mean). Inference only: the bag is built from trained models and is not trained itself.
    Separation cuts audio into segments no longer than its shortest member's.
    """

    outputs = ("waveforms",)

    def __init__(
        self, models: list[SeparationModel], weights: list[list[float]] | None = None
    ) -> None:
        if not models:
            raise SepkitError("BagOfModels: give at least one model")
        first = models[0]
        for model in models[1:]:
            for attribute in ("targets", "sample_rate", "nb_channels"):
                if getattr(model, attribute) != getattr(first, attribute):
                    raise SepkitError(
                        f"BagOfModels: {model.name} has {attribute} {getattr(model, attribute)}"
                        f", {first.name} {getattr(first, attribute)}: a bag's models must agree"
                    )
        super().__init__(first.targets, first.sample_rate, first.nb_channels)
        self.models = nn.ModuleList(models)
        if weights is None:
            weights = [[1.0] * len(first.targets) for _ in models]
        shape = [len(row) for row in weights]
        if shape != [len(first.targets)] * len(models):
            raise SepkitError(
                f"BagOfModels: weights need one row per model ({len(models)}) of one weight "
                f"per target ({len(first.targets)}), got rows of lengths {shape}"
            )
        weights_tensor = torch.tensor(weights, dtype=torch.float32)
        if (weights_tensor.sum(0) <= 0).any():
            raise SepkitError(
                f"BagOfModels: weights {weights} leave a target without a positive total"
            )
        # (models, targets), normalised so that each target's weights sum to one
        self.register_buffer("weights", weights_tensor / weights_tensor.sum(0), persistent=False)
        self.segment_seconds = min(model.segment_seconds for model in models)
        self.segment_overlap = max(model.segment_overlap for model in models)
        weightings = {model.segment_weighting for model in models}
        if len(weightings) == 1:  # members weighed alike: the bag too (else the default)
            self.segment_weighting = weightings.pop()

    def forward(self, mixture: Tensor) -> dict[str, Tensor]:
        """mixture (batch, channels, time) -> waveforms (batch, targets, channels, time)."""
        return {"waveforms": self._average(lambda model: model(mixture)["waveforms"])}

    def valid_length(self, length: int) -> int:
        """The longest of the members' valid lengths for ``length`` samples: each member
        takes any input length and pads what it needs itself."""
        return max(model.valid_length(length) for model in self.models)

    @torch.no_grad()
    def separate(self, mixture: Tensor, options: InferenceOptions | None = None) -> Tensor:
        """mixture (batch, channels, time) -> sources (batch, sources, channels, time), each
        member separating with ``options``; the residual (if asked) is the bag's."""
        options = options or InferenceOptions()
        without_residual = dataclasses.replace(options, residual=False)
        estimates = self._average(lambda model: model.separate(mixture, without_residual))
        if options.residual:
            residual = mixture - estimates.sum(1)
            estimates = torch.cat([estimates, residual.unsqueeze(1)], dim=1)
        return estimates

    def _average(self, estimate: Callable[[SeparationModel], Tensor]) -> Tensor:
        """The weighted mean over members of ``estimate(model)``, each (batch, targets,
        channels, time); a member whose weights are all zero is not run."""
        total: Tensor | None = None
        for model, weights in zip(self.models, self.weights, strict=True):
            if not weights.any():
                continue
            estimates = estimate(model)
            weighted = estimates * weights.to(estimates.dtype)[:, None, None]
            total = weighted if total is None else total + weighted
        assert total is not None  # every target has a positive total weight
        return total

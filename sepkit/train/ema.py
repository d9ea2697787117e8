"""An exponential moving average of a model's weights, as Demucs and MSST train with: after
every optimizer step each averaged parameter becomes ``decay * averaged + (1 - decay) *
current``; buffers (running statistics) are copied as they are."""

from __future__ import annotations

import copy
from typing import Any

import torch


class WeightAverage:
    """The averaged weights, held in a copy of the model (in eval mode, without gradients)
    that validation can run as it is; it starts from the model's weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current weights (after an optimizer step)."""
        for averaged, current in zip(self.model.parameters(), model.parameters(), strict=True):
            averaged.mul_(self.decay).add_(current.detach(), alpha=1 - self.decay)
        for averaged, current in zip(self.model.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.model.load_state_dict(state_dict)

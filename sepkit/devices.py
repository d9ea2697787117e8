"""Which torch device a setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) means."""

from __future__ import annotations

import torch

from sepkit.errors import SepkitError

__all__ = ["select_device"]


def select_device(name: str, local_rank: int = 0, setting: str = "trainer.device") -> torch.device:
    """``auto`` picks CUDA (this process's local GPU), then MPS, then the CPU.

    ``setting`` is the config key named in error messages.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SepkitError(
            f"{setting}={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SepkitError(f"{setting}={name}: CUDA is not available here; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SepkitError(f"{setting}={name}: MPS is not available here; use auto or cpu")
    return device

"""Which torch device a setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``) means."""

from __future__ import annotations

import torch

from sepkit.errors import SepkitError

__all__ = ["autocast", "autocast_dtype", "select_device"]


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


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The one mixed-precision dtype of a device, for training and separation alike:
    float16 on CUDA and MPS (their fast half-precision type; training pairs it with a
    gradient scaler), bfloat16 elsewhere (the CPU's, whose range needs no scaler)."""
    return torch.float16 if device.type in ("cuda", "mps") else torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision on ``device`` with its ``autocast_dtype``, or nothing if not enabled."""
    return torch.autocast(device.type, dtype=autocast_dtype(device), enabled=enabled)

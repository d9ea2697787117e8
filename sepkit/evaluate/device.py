"""Where the fast BSSEval backend computes: the CPU (numpy, no torch) or a GPU (torch)."""

from __future__ import annotations

import os
import sys

__all__ = ["no_gpu_here", "scoring_device"]


def no_gpu_here() -> bool:
    """Whether this machine certainly has no GPU torch could score on, told without importing
    torch: macOS (MPS has no float64), and Linux without the device files of NVIDIA's driver
    (/dev/nvidiactl; /dev/dxg under WSL) and of ROCm's (/dev/kfd)."""
    if sys.platform == "darwin":
        return True
    if sys.platform.startswith("linux"):
        return not any(map(os.path.exists, ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")))
    return False


def scoring_device(setting: str, here: bool) -> str | None:
    """The fast backend's device for TrackJob: None for the CPU (also for MPS, which has no
    float64), else a torch device name, or "auto" for scoring processes to resolve each on
    its own.

    Checked here when this process scores or holds a model (it has imported torch); a
    scoring process checks it otherwise, so that this one need not import torch to list the
    tracks. On the CPU the scores are computed without torch (numpy), and "auto" on a
    machine without a GPU means the CPU without asking torch.
    """
    if setting == "cpu" or (setting == "auto" and no_gpu_here()):
        return None
    if setting == "auto" and not here:
        return setting
    from sepkit.devices import select_device  # imports torch: only where a GPU may score

    device = select_device(setting, setting="device")
    # BSSEval solves its filters in float64, which MPS does not have: the CPU scores there
    return None if device.type in ("cpu", "mps") else str(device)

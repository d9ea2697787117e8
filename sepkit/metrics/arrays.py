"""numpy arrays and torch tensors alike: the few operations the metrics need that the two
spell differently.

The metrics compute on numpy arrays on the CPU, where torch is not imported at all, and on
torch tensors on other devices; their code is one, written in what both share, with these
helpers where they differ. None of them imports torch: a tensor exists only once it is.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = [
    "Array",
    "add_to_diagonal",
    "copy",
    "flip",
    "irfft",
    "is_tensor",
    "library",
    "on_device_of",
    "permute",
    "permuted",
    "random_normal",
    "rfft",
    "strided",
    "to_numpy",
    "zeros",
]

# a numpy array on the CPU, a torch tensor on other devices
Array = Any


def is_tensor(value: Any) -> bool:
    """Whether value is a torch tensor (without importing torch: none exists before it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.is_tensor(value)


def library(array: Array) -> Any:
    """numpy for a numpy array, torch for a tensor: the functions both spell alike."""
    return np if isinstance(array, np.ndarray) else sys.modules["torch"]


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (any device, with or without gradient) as a numpy array; anything else as
    np.asarray reads it (a numpy array itself)."""
    if is_tensor(value):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def zeros(like: Array, shape: tuple[int, ...], dtype: str = "float64") -> Array:
    """Zeros of a numpy or torch dtype name, where `like` is."""
    if isinstance(like, np.ndarray):
        return np.zeros(shape, dtype=dtype)
    return like.new_zeros(shape, dtype=getattr(sys.modules["torch"], dtype))


def on_device_of(like: Array, array: np.ndarray) -> Array:
    """A numpy array where `like` is: itself, or a tensor on like's device."""
    if isinstance(like, np.ndarray):
        return array
    return sys.modules["torch"].as_tensor(array, device=like.device)


def random_normal(like: Array, shape: tuple[int, ...]) -> Array:
    """Standard normal float64 values from a fixed seed, where `like` is."""
    if isinstance(like, np.ndarray):
        return np.random.default_rng(0).standard_normal(shape)
    torch = sys.modules["torch"]
    generator = torch.Generator(device=like.device).manual_seed(0)
    return torch.randn(shape, generator=generator, dtype=torch.float64, device=like.device)


def strided(array: Array, shape: tuple[int, ...], strides: tuple[int, ...], offset: int) -> Array:
    """Tensor.as_strided for both: a view of a C-contiguous array, strides in elements."""
    if isinstance(array, np.ndarray):
        start = array.reshape(-1)[offset:]
        byte_strides = tuple(stride * array.itemsize for stride in strides)
        return np.lib.stride_tricks.as_strided(start, shape, byte_strides, writeable=False)
    return array.as_strided(shape, strides, offset)


def flip(array: Array, axis: int) -> Array:
    """A C-contiguous copy with the order along `axis` reversed (torch.flip always copies)."""
    if isinstance(array, np.ndarray):
        return np.ascontiguousarray(np.flip(array, axis))
    return array.flip(axis)


def permute(array: Array, axes: tuple[int, ...]) -> Array:
    """A view with the axes in the given order."""
    return array.transpose(axes) if isinstance(array, np.ndarray) else array.permute(axes)


def copy(array: Array) -> Array:
    return array.copy() if isinstance(array, np.ndarray) else array.clone()


def add_to_diagonal(matrix: Array, value: float) -> None:
    """matrix += value * I, in place, for one (n, n) matrix."""
    if isinstance(matrix, np.ndarray):
        np.einsum("ii->i", matrix)[...] += value  # a writable view of the diagonal
    else:
        matrix.diagonal().add_(value)


def rfft(signal: Array, n: int | None = None, axis: int = -1) -> Array:
    if isinstance(signal, np.ndarray):
        return np.fft.rfft(signal, n=n, axis=axis)
    return sys.modules["torch"].fft.rfft(signal, n=n, dim=axis)


def irfft(spectrum: Array, n: int, axis: int = -1) -> Array:
    if isinstance(spectrum, np.ndarray):
        return np.fft.irfft(spectrum, n=n, axis=axis)
    return sys.modules["torch"].fft.irfft(spectrum, n=n, dim=axis)


def permuted(array: Array, axes: tuple[int, ...], conjugate: bool = False) -> Array:
    """A contiguous copy of an array with its axes permuted (and its values conjugated):
    the layout batched matrix products take without copying again."""
    if isinstance(array, np.ndarray):
        view = array.transpose(axes)
        if conjugate:
            return np.conjugate(view, out=np.empty(view.shape, view.dtype))
        return np.ascontiguousarray(view)
    view = array.permute(axes)
    return (view.conj() if conjugate else view).contiguous()

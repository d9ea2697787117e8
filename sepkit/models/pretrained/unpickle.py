"""Reading published files that pickle classes by name, without running code from them.

Demucs publishes its models as ``torch.save`` of a package dict whose ``klass`` entry is
the model class itself, pickled by reference (``demucs.htdemucs.HTDemucs``): an ordinary
``torch.load`` imports that module and calls whatever a file names. Here the file is read
with ``torch.load(weights_only=True)``, whose unpickler builds only tensors and plain
containers, plus:

- the class names a caller allows, each read as a ``PickledClass`` record of the name:
  nothing is imported, and the caller maps the name to a class of its own;
- ``fractions.Fraction``, the one value type demucs pickles (a segment length in seconds).

A file naming anything else is refused before unpickling starts, with the names it holds.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from sepkit.checkpoint import read_torch_file
from sepkit.errors import SepkitError

# types a published package may hold besides tensors and containers, by pickled name
VALUE_TYPES: dict[str, type] = {"fractions.Fraction": Fraction}


@dataclass(frozen=True)
class PickledClass:
    """A class named in a file, recorded instead of imported: ``path`` is ``module.Name``."""

    path: str


def named_globals(path: Path) -> list[str]:
    """The classes and functions that ``path`` (a ``torch.save`` zip file) names beyond what
    ``weights_only`` loading allows by default, read from its pickle without running it.

    Empty when the file cannot be scanned (not a zip file, damaged): reading it then fails
    with the reason."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # the scanner fails in many ways on bytes that are no torch file
        return []


def read_pickled_file(path: Path, classes: Collection[str], label: str) -> Any:
    """What ``torch.save`` wrote to ``path``, each class named in ``classes`` (``module.Name``)
    read as a ``PickledClass``; a file naming any other global is refused.

    ``label`` (for example ``pretrained=htdemucs``) starts every error message, which is one
    line naming the file and what it holds.
    """
    refused = sorted(set(named_globals(path)) - set(classes) - set(VALUE_TYPES))
    if refused:
        raise SepkitError(
            f"{label}: {path} names {', '.join(refused)}, which sepkit does not load (it reads "
            f"only {', '.join(sorted(classes))}, tensors and plain values; nothing in the file "
            "was run); delete the file and download it again"
        )
    allowed = [(PickledClass(name), name) for name in classes]
    allowed += [(value_type, name) for name, value_type in VALUE_TYPES.items()]
    with torch.serialization.safe_globals(allowed):
        try:
            return read_torch_file(path)
        except SepkitError as error:
            raise SepkitError(f"{label}: {error}; delete the file to download it again") from None

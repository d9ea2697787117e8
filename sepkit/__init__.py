"""sepkit: train, run and evaluate deep audio source separation networks."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``sepkit.Separator``, imported on first use so that ``import sepkit`` stays light."""
    if name == "Separator":
        from sepkit.separate import Separator

        return Separator
    raise AttributeError(f"module 'sepkit' has no attribute {name!r}")

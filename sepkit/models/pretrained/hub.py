"""The torch hub cache that published weights are downloaded to and read from.

``torch.hub`` keeps each file under its published name in ``$TORCH_HOME/hub/checkpoints/``
(by default ``~/.cache/torch/hub/checkpoints/``). A file is downloaded on first use and
read from there afterwards; without a connection, a file placed there by hand under its
published name is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from sepkit.checkpoint import load_weights
from sepkit.errors import SepkitError


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub`` keeps (and looks for) the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def load_hub_state_dict(url: str, label: str) -> dict[str, torch.Tensor]:
    """A state dict from the torch hub cache, downloaded there first when missing.

    The file name's hash is not checked (as Open-Unmix's own loader), so a file placed in
    the cache by hand under the published name is used as it is. ``label`` (for example
    ``pretrained=umxhq``) starts every error message.
    """
    cached = hub_cache_path(url)
    try:
        return torch.hub.load_state_dict_from_url(
            url,
            map_location="cpu",
            check_hash=False,
            progress=sys.stderr.isatty(),
            weights_only=True,
        )
    except OSError as error:  # no connection (URLError), HTTP error, unwritable cache
        if cached.exists():
            raise SepkitError(f"{label}: cannot read {cached}: {error}") from None
        reason = getattr(error, "reason", None) or error
        raise SepkitError(
            f"{label}: {url} is not in the torch hub cache and cannot be downloaded "
            f"({reason}); download it elsewhere and place it at {cached}"
        ) from None
    except Exception as error:  # a corrupt or foreign file in the cache
        first_line = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise SepkitError(
            f"{label}: {cached} is not a readable state dict ({first_line}); delete it to "
            "download it again"
        ) from None


def load_published_weights(module: torch.nn.Module, url: str, label: str) -> None:
    """Put the published state dict of ``url`` into ``module`` (strictly: every name and
    shape must match), or raise a one-line ``SepkitError`` naming the cached file."""
    state_dict = load_hub_state_dict(url, label)
    load_weights(
        module,
        state_dict,
        f"{label}: {hub_cache_path(url)}",
        fix="delete the file to download it again",
    )

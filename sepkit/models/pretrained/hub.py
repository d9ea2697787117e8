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

from sepkit.checkpoint import load_weights, read_torch_file
from sepkit.errors import SepkitError


def hub_cache_path(url: str) -> Path:
    """Where ``torch.hub`` keeps (and looks for) the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def cached_file(url: str, label: str, hash_prefix: str | None = None) -> Path:
    """The torch hub cache's file of ``url``, downloaded there first when missing.

    The file name's hash is not checked (as Open-Unmix's own loader), so a file placed in
    the cache by hand under the published name is used as it is. ``label`` (for example
    ``pretrained=umxhq``) starts the error message. A download whose SHA-256 does not start
    with ``hash_prefix`` (when given) is refused and not kept, as ``torch.hub`` does.
    """
    cached = hub_cache_path(url)
    if cached.is_file():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        # written to a temporary name and renamed: an interrupted download leaves no file
        torch.hub.download_url_to_file(
            url, str(cached), hash_prefix=hash_prefix, progress=sys.stderr.isatty()
        )
    except (OSError, RuntimeError) as error:  # no connection, HTTP error, other hash
        reason = getattr(error, "reason", None) or error
        raise SepkitError(
            f"{label}: {url} is not in the torch hub cache and cannot be downloaded "
            f"({reason}); download it elsewhere and place it at {cached}"
        ) from None
    return cached


def load_hub_state_dict(url: str, label: str) -> dict[str, torch.Tensor]:
    """The state dict of ``url`` from the torch hub cache (``cached_file``)."""
    path = cached_file(url, label)
    try:
        return read_torch_file(path)
    except SepkitError as error:  # a corrupt or foreign file in the cache
        raise SepkitError(f"{label}: {error}; delete it to download it again") from None


def load_published_weights(module: torch.nn.Module, url: str, label: str) -> None:
    """Put the published state dict of ``url`` into ``module`` (strictly: every name and
    shape must match), or raise a one-line ``SepkitError`` naming the cached file."""
    state_dict = load_hub_state_dict(url, label)
    source = f"{label}: {hub_cache_path(url)}"
    load_weights(module, state_dict, source, fix="delete the file to download it again")

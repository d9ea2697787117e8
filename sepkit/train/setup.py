"""Checks and preparation before the first step: the model, dataset and loss fit together,
and the model's input statistics are measured once per set of tracks."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import torch

from sepkit.data.base import SeparationData, read_track
from sepkit.data.cache import cache_root
from sepkit.errors import SepkitError
from sepkit.files import atomic_path
from sepkit.models.base import SeparationModel
from sepkit.train.processes import Distributed

log = logging.getLogger("sepkit.train")


def check_compatible(model: SeparationModel, data: Any, loss: Any) -> None:
    """A SepkitError naming both settings when the model's targets, rate or channels are not
    the dataset's, or the loss reads an output the model does not give."""
    if list(model.targets) != list(data.targets):
        raise SepkitError(
            f"model.targets={list(model.targets)} but dataset.targets={list(data.targets)}: "
            "leave model.targets at ${dataset.targets} or set both alike"
        )
    if model.sample_rate != data.sample_rate:
        raise SepkitError(
            f"model.sample_rate={model.sample_rate} but dataset.sample_rate="
            f"{data.sample_rate}: set both alike"
        )
    if model.nb_channels != data.nb_channels:
        raise SepkitError(
            f"model.nb_channels={model.nb_channels} but dataset.nb_channels="
            f"{data.nb_channels}: set both alike"
        )
    missing = [name for name in loss.reads if name not in model.outputs]
    if missing:
        raise SepkitError(
            f"loss {type(loss).__name__} reads {missing} but model {model.name} outputs "
            f"{list(model.outputs)}: choose a loss that reads what the model outputs"
        )
    check_source_order(model, data, loss)


def check_source_order(model: SeparationModel, data: Any, loss: Any) -> None:
    """Fit the loss to whether the dataset's sources have an order (named stems) or not
    (speakers); a SepkitError naming the pair when the model or the loss cannot train on
    them."""
    pair = f"model {model.name} on dataset {type(data).__name__} (targets {data.targets})"
    try:
        model.fit_sources(data.ordered_sources)
    except ValueError as error:
        raise SepkitError(f"{pair}: {error}") from None
    try:
        loss.fit_sources(data.ordered_sources)
    except ValueError as error:
        raise SepkitError(f"{pair} with loss {type(loss).__name__}: {error}") from None


def prepare_statistics(
    model: SeparationModel,
    data: SeparationData,
    max_tracks: int | None,
    distributed: Distributed,
) -> dict[str, torch.Tensor] | None:
    """The model's input statistics over the training tracks, from a cache when the same
    tracks and settings were measured before (rank 0 computes, the others wait)."""
    key = model.statistics_key()
    if key is None:
        return None
    tracks = data.train_tracks()[:max_tracks] if max_tracks else data.train_tracks()
    description = {
        "model": key,
        "tracks": [[str(track.mixture or track.sources), track.num_frames] for track in tracks],
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "statistics" / f"{digest}.pt"
    if distributed.is_main and not path.is_file():
        log.info("computing input statistics over %d training tracks", len(tracks))
        mixtures = (read_track(track, nb_channels=model.nb_channels)[0] for track in tracks)
        statistics = model.compute_statistics(mixtures)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            torch.save(statistics, temporary)
    distributed.barrier()
    return torch.load(path, map_location="cpu", weights_only=True)

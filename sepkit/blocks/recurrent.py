"""Stacks of recurrent layers."""

from __future__ import annotations

from torch import nn


def recurrent_stack(
    input_size: int,
    hidden_size: int,
    num_layers: int = 3,
    bidirectional: bool = True,
    cell: str = "lstm",
    dropout: float = 0.0,
    batch_first: bool = False,
) -> nn.LSTM | nn.GRU:
    """A stack of LSTM or GRU layers, uni- or bidirectional.

    ``hidden_size`` is per direction: a bidirectional stack outputs ``2 * hidden_size``
    features. ``dropout`` applies between layers (torch's convention), so it is ignored
    for a single layer. The module's forward returns ``(output, state)`` as torch's
    recurrent modules do; output is (frames, batch, features) unless ``batch_first``.
    """
    kinds = {"lstm": nn.LSTM, "gru": nn.GRU}
    if cell not in kinds:
        raise ValueError(f"unknown recurrent cell {cell!r}: use one of {sorted(kinds)}")
    return kinds[cell](
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=dropout if num_layers > 1 else 0.0,
        batch_first=batch_first,
    )

"""Long inputs are separated in segments weighed and padded as the tool a model's published
weights ran with: HTDemucs as demucs 4.1.0's ``apply_model`` (split, overlap 0.25, no
shifts), a band-split RoFormer as the Music-Source-Separation-Training project's ``demix``
(chunk size and ``num_overlap`` from its YAML); streamed in uneven pieces, the same stems.
Each comparison prints its largest difference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sepkit.models.bag import BagOfModels
from sepkit.models.bs_roformer import BSRoformer
from sepkit.models.htdemucs import HTDemucs
from sepkit.separate import Separator
from tests.references import audio_separator_roformer, demucs4
from tests.test_htdemucs import SMALL_HTDEMUCS, _pair
from tests.test_roformer import SMALL, SMALL_BANDS

TOLERANCE = 1e-4
RATE = 44100


def _mixture(length: int, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(2, length, generator=generator)


def _largest_difference(label: str, stems: dict[str, torch.Tensor], expected: torch.Tensor):
    estimate = torch.stack(list(stems.values()))
    assert estimate.shape == expected.shape
    difference = (estimate - expected).abs().max().item()
    print(f"{label}: largest difference {difference:.2e} (peak {expected.abs().max():.2f})")
    return difference


def _streamed(separator: Separator, mixture: torch.Tensor, pieces: list[int]) -> torch.Tensor:
    stream = separator.stream(RATE, mixture.shape[0])
    bounds = [0, *pieces, mixture.shape[-1]]
    blocks = [stream.push(mixture[:, a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return torch.cat([*blocks, stream.finish()], dim=-1)


# -- HTDemucs as demucs 4.1.0's apply_model -------------------------------------------------


@pytest.mark.parametrize("seconds", [pytest.param(3.3, marks=pytest.mark.slow), 0.6])
def test_htdemucs_separates_as_demucs_apply_model(seconds):
    (apply,) = demucs4("apply")
    reference, model = _pair(HTDemucs, **SMALL_HTDEMUCS)
    mixture = _mixture(int(seconds * RATE))  # several 1 s segments and a short tail
    with torch.no_grad():
        expected = apply.apply_model(
            reference, mixture[None], shifts=0, split=True, overlap=0.25, progress=False
        )[0]
    separator = Separator(model, device="cpu")
    assert separator.overlap == 0.25
    stems = separator.separate(mixture, RATE)
    assert _largest_difference("htdemucs", stems, expected) < TOLERANCE
    if seconds > 1:
        streamed = _streamed(separator, mixture, [1000, 1001, 50000, 120000])
        assert (streamed - torch.stack(list(stems.values()))).abs().max() < 1e-5
        bag = Separator(BagOfModels([model, model]), device="cpu").separate(mixture, RATE)
        assert _largest_difference("bag of htdemucs", bag, expected) < TOLERANCE


# -- band-split RoFormer as MSST's demix ------------------------------------------------------


def msst_demix(model, mixture: torch.Tensor, chunk_size: int, num_overlap: int) -> torch.Tensor:
    """(channels, time) -> (stems, channels, time): the Music-Source-Separation-Training
    project's generic ``demix`` with batch size 1, written from its description: chunks
    every ``chunk_size // num_overlap``, weighted by a window fading linearly over a tenth
    of a chunk (not at the first chunk's start nor the last's end), summed and divided by
    the summed windows; the input reflect-padded at both ends by chunk - step when longer
    than twice that; a short last chunk reflect-padded when over half a chunk, else zeros."""
    step, fade = chunk_size // num_overlap, chunk_size // 10
    border = chunk_size - step
    length = mixture.shape[-1]
    padded = length > 2 * border and border > 0
    if padded:
        mixture = F.pad(mixture[None], (border, border), mode="reflect")[0]
    window = torch.ones(chunk_size)
    window[-fade:] = torch.linspace(1, 0, fade)
    window[:fade] = torch.linspace(0, 1, fade)
    total, counter, start = 0.0, torch.zeros(mixture.shape[-1]), 0
    while start < mixture.shape[-1]:
        part = mixture[:, start : start + chunk_size]
        own = part.shape[-1]
        mode = "reflect" if own > chunk_size // 2 else "constant"
        part = F.pad(part[None], (0, chunk_size - own), mode=mode)
        with torch.no_grad():
            stems = model(part)[0]
        stems = stems[None] if stems.dim() == 2 else stems  # one stem: no stems axis
        weights = window.clone()
        if start == 0:
            weights[:fade] = 1
        elif start + step >= mixture.shape[-1]:
            weights[-fade:] = 1
        if isinstance(total, float):
            total = torch.zeros(stems.shape[0], mixture.shape[0], mixture.shape[-1])
        total[..., start : start + own] += stems[..., :own] * weights[:own]
        counter[start : start + own] += weights[:own]
        start += step
    estimate = torch.nan_to_num(total / counter)
    return estimate[..., border:-border] if padded else estimate


@pytest.mark.parametrize("num_overlap", [2, 4])
@pytest.mark.parametrize("length", [8400, 3000])
def test_bs_roformer_separates_as_msst_demix(num_overlap, length):
    (bs_roformer,) = audio_separator_roformer("bs_roformer")
    torch.manual_seed(0)
    arguments = {**SMALL, **SMALL_BANDS["bs"]}
    reference = bs_roformer.BSRoformer(**arguments, stereo=True, num_stems=2).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    model = BSRoformer(targets=["vocals", "other"], stereo=True, **arguments).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    chunk_size = 40 * SMALL["stft_hop_length"]
    mixture = _mixture(length)
    expected = msst_demix(reference, mixture, chunk_size, num_overlap)
    separator = Separator(
        model, segment=chunk_size / RATE, overlap=1 - 1 / num_overlap, device="cpu"
    )
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    stems = separator.separate(mixture, RATE)
    hook.remove()
    label = f"bs_roformer, num_overlap {num_overlap}, {length} samples"
    assert _largest_difference(label, stems, expected) < TOLERANCE
    # the reference also separates the chunks that start in its trailing padding and
    # throws their stems away; sepkit skips them
    step = chunk_size // num_overlap
    border = chunk_size - step if length > 2 * (chunk_size - step) else 0
    starts = range(0, length + 2 * border, step)
    print(f"{label}: {len(calls)} segments separated, the reference {len(starts)}")
    assert len(calls) == sum(start < border + length for start in starts)
    streamed = _streamed(separator, mixture, [7, 3000, 3001, 5000])
    assert (streamed - torch.stack(list(stems.values()))).abs().max() < 1e-5

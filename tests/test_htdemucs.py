"""HTDemucs (Demucs v4) and HDemucs (Demucs v3) against demucs 4.1.0's own classes: the
reference's state dict loads with strict=True and the same input gives the same output (each
test prints its largest difference), at small sizes and at the published models' shapes; the
constructors take the reference's arguments; the models train and pad to their segment."""

from __future__ import annotations

import inspect
from functools import cache

import pytest
import torch

from sepkit.models.hdemucs import HDemucs
from sepkit.models.htdemucs import HTDemucs
from tests.references import demucs4

SOURCES = ["drums", "bass", "other", "vocals"]
TOLERANCE = 1e-4


@cache
def reference_classes() -> dict[str, type]:
    htdemucs, hdemucs = demucs4("htdemucs", "hdemucs")
    return {"HTDemucs": htdemucs.HTDemucs, "HDemucs": hdemucs.HDemucs}


def _pair(ours: type, seed: int = 0, **kwargs):
    """The reference built with ``kwargs`` and every weight perturbed (LayerScales start
    near zero and would hide their branches), and ours loading its state dict strictly."""
    torch.manual_seed(seed)
    reference = reference_classes()[ours.__name__](SOURCES, **kwargs).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model = ours(SOURCES, **kwargs).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    return reference, model


def _largest_difference(reference, model, seconds: float, batch: int = 1, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    mixture = 0.3 * torch.randn(batch, 2, int(seconds * 44100), generator=generator)
    with torch.no_grad():
        expected = reference(mixture)
        estimate = model(mixture)["waveforms"]
    assert estimate.shape == expected.shape == (batch, len(SOURCES), 2, mixture.shape[-1])
    difference = (estimate - expected).abs().max().item()
    print(f"{type(model).__name__}: largest difference {difference:.2e}", end=" ")
    print(f"(output peak {expected.abs().max().item():.2f})")
    return difference


SMALL_HTDEMUCS = dict(channels=8, depth=3, nfft=512, t_layers=2, t_heads=2, segment=1)


@pytest.mark.parametrize(
    "options",
    [
        {},
        dict(bottom_channels=16, dconv_mode=3, t_cross_first=True),
        dict(t_emb="scaled", t_norm_first=False, t_layer_scale=False, t_gelu=False),
        dict(t_emb="cape", t_group_norm=1, depth=4, nfft=1024, t_layers=3, use_train_segment=False),
    ],
    ids=["default", "bottom_dconv3_crossfirst", "scaled_postnorm", "cape_merged"],
)
def test_small_htdemucs_matches_demucs(options):
    reference, model = _pair(HTDemucs, **{**SMALL_HTDEMUCS, **options})
    assert _largest_difference(reference, model, seconds=0.7, batch=2) < TOLERANCE


@pytest.mark.slow
def test_htdemucs_of_the_published_shape_matches_demucs():
    # htdemucs: 42M weights, DConv in encoders and decoders, a 512-channel transformer,
    # trained on 7.8 s excerpts (the 2 s input is padded to them, as demucs does)
    reference, model = _pair(HTDemucs, dconv_mode=3, bottom_channels=512, segment=7.8)
    assert sum(parameter.numel() for parameter in model.parameters()) == 41_984_456
    assert _largest_difference(reference, model, seconds=2.0) < TOLERANCE


SMALL_HDEMUCS = dict(channels=8, depth=5, nfft=1024, segment=4)


@pytest.mark.parametrize(
    "options",
    [
        dict(dconv_attn=3, dconv_lstm=3, dconv_mode=3),
        dict(hybrid=False, cac=False, wiener_iters=-1, end_iters=-1),
        dict(hybrid_old=True, context_enc=1, dconv_depth=-2),
        dict(hybrid=False, cac=False, wiener_iters=1, end_iters=-1, wiener_residual=True),
    ],
    ids=["lstm_attention", "spectrogram_only_masking", "hybrid_old", "spectrogram_only_wiener"],
)
def test_small_hdemucs_matches_demucs(options):
    # with the BLSTM, 1.5 s: the innermost frequency layer sees more than 200 frames, so
    # the DConv BLSTM runs on overlapping chunks
    reference, model = _pair(HDemucs, **{**SMALL_HDEMUCS, **options})
    seconds = 1.5 if options.get("dconv_lstm") == 3 else 0.5
    assert _largest_difference(reference, model, seconds=seconds) < TOLERANCE


@pytest.mark.slow
def test_hdemucs_of_the_published_shape_matches_demucs():
    # hdemucs_mmi: 6 layers, BLSTM and local attention in the DConv of the two innermost
    reference, model = _pair(HDemucs, dconv_init=1e-3)
    assert sum(parameter.numel() for parameter in model.parameters()) == 83_637_832
    assert _largest_difference(reference, model, seconds=2.0) < TOLERANCE


@pytest.mark.parametrize("ours", [HTDemucs, HDemucs])
def test_constructor_takes_the_reference_arguments_and_defaults(ours):
    reference = inspect.signature(reference_classes()[ours.__name__]).parameters
    signature = inspect.signature(ours).parameters
    assert list(signature) == ["targets", *[name for name in reference if name != "sources"]]
    for name, parameter in reference.items():
        if name != "sources":
            default = signature[name].default
            expected = parameter.default
            assert (list(default) if isinstance(default, tuple) else default) == expected, name


def test_htdemucs_separates_at_its_training_segment():
    model = HTDemucs(SOURCES, **SMALL_HTDEMUCS).eval()
    assert model.segment_seconds == model.training_segment == 1.0
    assert model.valid_length(1000) == 44100  # padded to the training excerpt
    assert model.valid_length(50000) == 50000  # a longer input is taken whole
    mixture = torch.randn(1, 2, 20000)
    with torch.no_grad():
        short = model(mixture)["waveforms"]
        padded = model(torch.nn.functional.pad(mixture, (0, 44100 - 20000)))["waveforms"]
    assert short.shape == (1, 4, 2, 20000)
    torch.testing.assert_close(short, padded[..., :20000])
    assert HDemucs(SOURCES, **SMALL_HDEMUCS).segment_seconds == 4.0


@pytest.mark.parametrize(
    "ours, options", [(HTDemucs, SMALL_HTDEMUCS), (HDemucs, dict(SMALL_HDEMUCS, dconv_mode=3))]
)
def test_a_training_step_reaches_every_weight(ours, options):
    torch.manual_seed(0)
    model = ours(SOURCES, **options).train()
    sources = 0.1 * torch.randn(2, len(SOURCES), 2, 22050)
    estimate = model(sources.sum(1))["waveforms"]
    assert estimate.shape == sources.shape
    loss = (estimate - sources).abs().mean()
    loss.backward()
    assert torch.isfinite(loss)
    without = [name for name, p in model.named_parameters() if p.grad is None]
    assert not without
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_unsupported_options_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="multi_freqs"):
        HTDemucs(SOURCES, multi_freqs=[0.5])
    with pytest.raises(ValueError, match="sparse"):
        HTDemucs(SOURCES, t_sparse_self_attn=True)
    with pytest.raises(ValueError, match="cac=True"):
        HDemucs(SOURCES, cac=False)


@pytest.mark.parametrize(
    "nfft, depth, message",
    [(2048, 3, "nfft=2048, depth=3: .* never join"), (1024, 3, "raise depth"),
     (2048, 5, "nfft=2048, stride=4: the branches join at layer 5")],
)  # fmt: skip
def test_hdemucs_whose_branches_would_not_join_is_refused_when_built(nfft, depth, message):
    # demucs 4.1.0 builds these and fails at the first forward pass with a shape mismatch
    with pytest.raises(ValueError, match=message):
        HDemucs(SOURCES, channels=4, nfft=nfft, depth=depth)
    # the shapes the checks let through separate
    model = HDemucs(SOURCES, channels=4, nfft=1024, depth=4, samplerate=22050, segment=2.0)
    assert model(torch.randn(1, 2, 22050))["waveforms"].shape == (1, len(SOURCES), 2, 22050)

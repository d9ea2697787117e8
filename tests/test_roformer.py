"""BSRoformer and MelBandRoformer against the copies audio-separator 0.47.1 ships (the layout
of the community checkpoints): the reference's state dict loads with strict=True and the
outputs agree, for small models and for published shapes; the mel filter bank equals
librosa's; a small model trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sepkit.blocks import roformer
from sepkit.blocks.mel import mel_filter_bank
from sepkit.models.bs_roformer import BSRoformer
from sepkit.models.mel_roformer import MelBandRoformer
from tests.references import audio_separator_roformer

TOLERANCE = 1e-4
SMALL = dict(
    dim=32, depth=2, time_transformer_depth=1, freq_transformer_depth=1, dim_head=16, heads=2,
    stft_n_fft=256, stft_hop_length=64, stft_win_length=256,
)  # fmt: skip
SMALL_BANDS = {"bs": dict(freqs_per_bands=(8, 8, 16, 32, 65)), "mel": dict(num_bands=8)}
# model_bs_roformer_ep_317_sdr_12.9755 (viperx) and Kimberley Jensen's Mel-Band RoFormer
# vocals model, as their Music-Source-Separation-Training YAMLs give them
PUBLISHED = {
    "bs": dict(
        dim=512, depth=12, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64,
        heads=8, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
        mask_estimator_depth=2, attn_dropout=0.1, ff_dropout=0.1,
    ),
    "mel": dict(
        dim=384, depth=6, time_transformer_depth=1, freq_transformer_depth=1, num_bands=60,
        dim_head=64, heads=8, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
        mask_estimator_depth=2, attn_dropout=0.0, ff_dropout=0.0,
    ),
}  # fmt: skip


def reference_model(kind: str, targets: list[str], stereo: bool, **arguments) -> torch.nn.Module:
    """The reference class with random weights (norm gains too), in eval mode."""
    bs_roformer, mel_band_roformer = audio_separator_roformer("bs_roformer", "mel_band_roformer")
    cls = bs_roformer.BSRoformer if kind == "bs" else mel_band_roformer.MelBandRoformer
    if kind == "mel":
        arguments["match_input_audio_length"] = True
    model = cls(**arguments, stereo=stereo, num_stems=len(targets))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


def sepkit_model(kind: str, targets: list[str], stereo: bool, **arguments) -> torch.nn.Module:
    cls = BSRoformer if kind == "bs" else MelBandRoformer
    return cls(targets=targets, stereo=stereo, **arguments).eval()


def largest_difference(
    kind: str, targets: list[str], stereo: bool, seconds: float, batch: int, **arguments
) -> float:
    """Both models on the same random input (batch, channels, seconds at 44.1 kHz) with the
    reference's weights loaded strict: the largest absolute difference of their outputs
    over the reference's length."""
    torch.manual_seed(0)
    reference = reference_model(kind, targets, stereo, **arguments)
    model = sepkit_model(kind, targets, stereo, **arguments)
    model.load_state_dict(reference.state_dict(), strict=True)
    mixture = 0.5 * torch.randn(batch, 2 if stereo else 1, int(seconds * 44100))
    with torch.no_grad():
        expected = reference(mixture)
        estimate = model(mixture)["waveforms"]
    if len(targets) == 1:
        expected = expected.unsqueeze(1)  # the reference drops the sources axis for one stem
    assert estimate.shape == (batch, len(targets), mixture.shape[1], mixture.shape[-1])
    # the reference's BS-RoFormer returns whole hops only; sepkit, the input's length
    difference = (estimate[..., : expected.shape[-1]] - expected).abs().max().item()
    print(f"{kind} {len(targets)} stem(s), stereo={stereo}: largest difference {difference:.2e}")
    return difference


@pytest.mark.parametrize(
    "kind, targets, stereo",
    [
        ("bs", ["vocals"], True),
        ("bs", ["vocals", "drums", "bass"], True),
        ("bs", ["vocals", "other"], False),
        ("mel", ["vocals"], True),
        ("mel", ["vocals", "drums", "bass"], True),
        ("mel", ["vocals", "other"], False),
    ],
)
def test_a_small_model_loads_the_reference_weights_and_separates_alike(kind, targets, stereo):
    arguments = {**SMALL, **SMALL_BANDS[kind]}
    assert largest_difference(kind, targets, stereo, 0.5, 2, **arguments) < TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bs", "mel"])
def test_a_published_shape_separates_as_the_reference(kind):
    # half a second: a 160M-weight model computes about 1 TFLOP per second of stereo audio
    difference = largest_difference(kind, ["vocals"], True, 0.5, 1, **PUBLISHED[kind])
    assert difference < TOLERANCE


@pytest.mark.parametrize(
    "sample_rate, n_fft, n_mels", [(44100, 2048, 60), (44100, 4096, 128), (48000, 2048, 60),
                                   (16000, 512, 40), (22050, 256, 8)]
)  # fmt: skip
def test_the_mel_filter_bank_equals_librosas(sample_rate, n_fft, n_mels):
    audio_separator_roformer("mel_band_roformer")  # puts the reference folder's librosa in reach
    import librosa

    expected = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    computed = mel_filter_bank(sample_rate, n_fft, n_mels)
    print(f"largest difference {np.abs(computed - expected).max():.2e}")
    assert computed.dtype == expected.dtype and np.array_equal(computed, expected)


@pytest.mark.parametrize("kind", ["bs", "mel"])
def test_a_small_model_trains(kind):
    torch.manual_seed(0)
    model = sepkit_model(kind, ["vocals", "other"], True, **SMALL, **SMALL_BANDS[kind]).train()
    mixture = 0.5 * torch.randn(2, 2, 11025)
    sources = 0.5 * torch.randn(2, 2, 2, 11025)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = F.l1_loss(model(mixture)["waveforms"], sources)
        optimizer.zero_grad()
        loss.backward()
        if not losses:
            trained = dict(model.named_parameters())
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.values())
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # the rotary frequencies are state, not trained
    assert not any(name.endswith("rotary_embed.freqs") for name in trained)
    assert any(name.endswith("rotary_embed.freqs") for name in model.state_dict())


@pytest.mark.parametrize("kind", ["bs", "mel"])
def test_use_torch_checkpoint_recomputes_the_transformers_and_gives_the_same_gradients(kind):
    torch.manual_seed(0)
    arguments = {**SMALL, **SMALL_BANDS[kind], "attn_dropout": 0.1, "ff_dropout": 0.1}
    plain = sepkit_model(kind, ["vocals", "other"], True, **arguments).train()
    checkpointed = sepkit_model(
        kind, ["vocals", "other"], True, **arguments, use_torch_checkpoint=True
    ).train()
    checkpointed.load_state_dict(plain.state_dict())
    mixture = 0.5 * torch.randn(2, 2, 11025)
    sources = 0.5 * torch.randn(2, 2, 2, 11025)
    calls = []
    first_transformer = checkpointed.layers[0][0]
    # a pre-hook: the recomputation stops as soon as it has what the backward pass needs
    first_transformer.register_forward_pre_hook(lambda *_: calls.append(True))
    for model in (plain, checkpointed):
        torch.manual_seed(1)  # the same dropout masks
        F.l1_loss(model(mixture)["waveforms"], sources).backward()
    # once forward, once more in the backward pass (its activations were not kept)
    assert len(calls) == 2
    for (name, expected), computed in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(computed.grad, expected.grad, atol=1e-6, rtol=1e-5), name
    # separating never recomputes: checkpointing is for training only
    calls.clear()
    with torch.no_grad():
        checkpointed.eval()(mixture)
    assert len(calls) == 1


@pytest.mark.parametrize("tokens, groups", [(200, 5), (400, 3), (10**6, 1)])
@pytest.mark.parametrize("amp", [False, True])
def test_without_gradients_the_sequences_go_through_in_groups_with_the_same_output(
    tokens, groups, amp, monkeypatch
):
    """Separating runs the axial transformers a few bands (or frames) at a time, so that
    memory holds one group's activations; the output is that of all of them at once."""
    torch.manual_seed(0)
    model = sepkit_model("bs", ["vocals", "other"], True, **SMALL, **SMALL_BANDS["bs"])
    mixture = 0.5 * torch.randn(2, 2, 11025)  # 173 frames, 5 bands
    calls = []
    model.layers[0][0].register_forward_pre_hook(lambda *_: calls.append(True))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        whole = model(mixture)["waveforms"].detach()  # gradients on: one pass
        monkeypatch.setattr(roformer, "INFERENCE_GROUP_TOKENS", tokens)
        with torch.no_grad():
            grouped = model(mixture)["waveforms"]
    # bands per time-transformer group: tokens // 173 frames, at least one
    assert len(calls) == 1 + groups
    difference = (grouped - whole).abs().max().item()
    print(f"{groups} group(s), amp={amp}: largest difference {difference:.1e}")
    assert grouped.dtype == whole.dtype and difference < (1e-2 if amp else 1e-6)


@pytest.mark.parametrize(
    "cls, arguments, message",
    [
        (BSRoformer, dict(freqs_per_bands=(8, 8)), "freqs_per_bands adds up to 16 bins"),
        (BSRoformer, dict(linear_transformer_depth=1), "linear_transformer_depth=1"),
        (BSRoformer, dict(stft_win_length=128), "stft_win_length=128"),
        (MelBandRoformer, dict(stft_normalized=True), "stft_normalized=True"),
        (MelBandRoformer, dict(stereo=True, nb_channels=1), "stereo=True, nb_channels=1"),
        (BSRoformer, dict(nb_channels=6), "nb_channels=6"),
    ],
)
def test_options_sepkit_does_not_implement_or_that_disagree_are_refused(cls, arguments, message):
    options = {**SMALL, **(SMALL_BANDS["bs"] if cls is BSRoformer else SMALL_BANDS["mel"])}
    with pytest.raises(ValueError, match=message):
        cls(targets=["vocals"], **{**options, **arguments})


@pytest.mark.parametrize("cls", [BSRoformer, MelBandRoformer])
def test_the_channels_come_from_stereo_or_nb_channels(cls):
    options = {**SMALL, **(SMALL_BANDS["bs"] if cls is BSRoformer else SMALL_BANDS["mel"])}
    for settings, channels in [({}, 1), ({"stereo": True}, 2), ({"nb_channels": 2}, 2),
                               ({"stereo": False, "nb_channels": 1}, 1)]:  # fmt: skip
        model = cls(targets=["vocals"], **options, **settings)
        assert model.nb_channels == channels
        assert model(torch.zeros(1, channels, 4096))["waveforms"].shape == (1, 1, channels, 4096)

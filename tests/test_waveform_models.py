"""Waveform models (TasNet, Conv-TasNet, Wave-U-Net, Demucs) and their blocks: lengths,
checkpoints, causality, alignment, and the shift trick."""

from __future__ import annotations

import pytest
import torch

from sepkit.blocks.filterbank import OverlapAddDecoder, overlap_add
from sepkit.blocks.layer_norm import CumulativeLayerNorm, GlobalLayerNorm
from sepkit.blocks.unet1d import Interpolation
from sepkit.checkpoint import build_model
from sepkit.models.convtasnet import ConvTasNet
from sepkit.models.demucs import Demucs
from sepkit.models.shifts import apply_shifts
from sepkit.models.tasnet import TasNet
from sepkit.models.waveunet import WaveUNet

MUSIC = ["vocals", "drums", "bass", "other"]
SPEECH = ["s1", "s2"]


def small_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "tasnet": TasNet(SPEECH, filters=16, kernel_size=8, hidden_size=8, layers=4),
        "tasnet_overlapping": TasNet(
            SPEECH, nb_channels=2, filters=16, kernel_size=8, stride=4, hidden_size=8, layers=2
        ),
        "convtasnet": ConvTasNet(
            SPEECH, filters=16, kernel_size=8, bottleneck_channels=8, skip_channels=8,
            hidden_channels=16, layers=3, repeats=2,
        ),
        "convtasnet_music": ConvTasNet(
            MUSIC, sample_rate=44100, nb_channels=2, filters=16, kernel_size=8,
            bottleneck_channels=8, skip_channels=None, hidden_channels=16, layers=2, repeats=1,
            norm="cumulative", causal=True, mask="relu",
        ),
        "waveunet": WaveUNet(MUSIC, levels=3, extra_filters=4, upsampling="learned"),
        "demucs": Demucs(MUSIC, channels=4, depth=3, lstm_layers=1),
    }  # fmt: skip


MODELS = small_models()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("length", [1, 7, 1001])
def test_output_has_the_input_length_and_one_waveform_per_target(name, length):
    model = MODELS[name].eval()
    mixture = torch.randn(2, model.nb_channels, length)
    with torch.no_grad():
        waveforms = model(mixture)["waveforms"]
    assert waveforms.shape == (2, len(model.targets), model.nb_channels, length)
    assert torch.isfinite(waveforms).all()
    assert model.valid_length(length) >= length


@pytest.mark.parametrize("name", sorted(MODELS))
def test_checkpoint_round_trip_rebuilds_the_same_model(name):
    model = MODELS[name].eval()
    rebuilt = build_model({"model": {"config": model.config, "state_dict": model.state_dict()}})
    mixture = torch.randn(1, model.nb_channels, 999)
    with torch.no_grad():
        expected = model.separate(mixture)
        torch.testing.assert_close(rebuilt.separate(mixture), expected, rtol=0, atol=0)
    assert rebuilt.config == model.config
    assert expected.shape == (1, len(model.targets), model.nb_channels, 999)


@pytest.mark.parametrize(
    "model,frame",
    [
        (MODELS["convtasnet_music"], 4),
        (TasNet(SPEECH, filters=16, kernel_size=8, hidden_size=8, bidirectional=False), 8),
    ],
)
def test_causal_models_ignore_the_future(model, frame):
    model.eval()
    mixture = torch.randn(1, model.nb_channels, 800)
    changed = mixture.clone()
    changed[..., 400:] = torch.randn_like(changed[..., 400:])
    with torch.no_grad():
        before = model(mixture)["waveforms"]
        after = model(changed)["waveforms"]
    # a frame reaching sample 400 may change; every sample of earlier frames may not
    untouched = (400 // frame - 2) * frame
    torch.testing.assert_close(after[..., :untouched], before[..., :untouched], rtol=0, atol=1e-5)
    assert not torch.allclose(after[..., 400:], before[..., 400:])


def test_a_causal_convtasnet_refuses_the_global_norm():
    with pytest.raises(ValueError, match="cumulative"):
        ConvTasNet(SPEECH, causal=True, norm="global")


def test_waveunet_output_is_aligned_with_its_input():
    model = WaveUNet(MUSIC, levels=4, extra_filters=4, output="direct", output_activation="linear")
    with torch.no_grad():  # every source: the mixture channels that join the last features
        model.source_outputs.weight.zero_()
        model.source_outputs.bias.zero_()
        for source in range(4):
            for channel in range(2):
                model.source_outputs.weight[2 * source + channel, channel] = 1.0
        mixture = torch.randn(1, 2, 1234)
        waveforms = model(mixture)["waveforms"]
    for source in range(4):
        torch.testing.assert_close(waveforms[:, source], mixture, rtol=0, atol=0)


def test_waveunet_difference_output_adds_up_to_the_mixture():
    model = WaveUNet(MUSIC, levels=3, extra_filters=4, output="difference")
    mixture = torch.randn(2, 2, 777)
    with torch.no_grad():
        waveforms = model(mixture)["waveforms"]
    torch.testing.assert_close(waveforms.sum(1), mixture, rtol=0, atol=1e-5)


def test_waveunet_valid_length_is_computed_whole():
    model = WaveUNet(MUSIC, levels=12)
    assert model.valid_length(16384) == 16389  # the paper's output size for 12 levels
    before, after = model.context(16389)
    assert before + 16389 + after == 147443  # and its input size


def test_demucs_valid_length_is_the_papers():
    model = Demucs(MUSIC, channels=4)
    assert model.valid_length(44100) == 49834  # demucs 2.0.3, defaults


# -- blocks ----------------------------------------------------------------------------


def test_overlap_add_sums_frames_at_their_offsets():
    frames = torch.randn(2, 3, 5, 8)  # (batch, sources, frames, frame_length)
    expected = torch.zeros(2, 3, 4 * 3 + 8)
    for index in range(5):
        expected[..., 3 * index : 3 * index + 8] += frames[..., index, :]
    torch.testing.assert_close(overlap_add(frames, 3), expected)


def test_decoder_length_is_whole_frames():
    decoder = OverlapAddDecoder(filters=6, kernel_size=8, stride=4, channels=2)
    assert decoder(torch.randn(3, 4, 6, 10)).shape == (3, 4, 2, 9 * 4 + 8)


def test_cumulative_layer_norm_is_global_norm_over_the_past():
    x = torch.randn(2, 5, 30)
    cumulative = CumulativeLayerNorm(5)(x)
    for frame in (0, 7, 29):
        expected = GlobalLayerNorm(5)(x[..., : frame + 1])[..., -1]
        torch.testing.assert_close(cumulative[..., frame], expected, rtol=1e-4, atol=1e-4)


def test_learned_interpolation_starts_linear():
    x = torch.randn(2, 3, 10)
    linear = Interpolation(3, "linear")(x)
    torch.testing.assert_close(Interpolation(3, "learned")(x), linear)
    assert linear.shape[-1] == 19
    torch.testing.assert_close(linear[..., ::2], x)
    torch.testing.assert_close(linear[..., 1::2], (x[..., 1:] + x[..., :-1]) / 2)


# -- the shift trick --------------------------------------------------------------------


def test_shifts_leave_a_time_invariant_separation_unchanged():
    def halves(mixture):
        return torch.stack([0.5 * mixture, 0.5 * mixture], dim=1)

    mixture = torch.randn(1, 2, 500)
    generator = torch.Generator().manual_seed(0)
    shifted = apply_shifts(halves, mixture, shifts=5, max_shift=100, generator=generator)
    torch.testing.assert_close(shifted, halves(mixture), rtol=0, atol=1e-6)


def test_shifts_average_separations_of_delayed_inputs():
    model = MODELS["demucs"].eval()
    mixture = torch.randn(1, 2, 3000)

    def separate(x):
        return model(x)["waveforms"]

    with torch.no_grad():
        shifted = apply_shifts(
            separate, mixture, 3, max_shift=400, generator=torch.Generator().manual_seed(5)
        )
        replay = torch.Generator().manual_seed(5)
        expected = 0
        for _ in range(3):
            delay = int(torch.randint(0, 401, (1,), generator=replay))
            padded = torch.nn.functional.pad(mixture, (delay, 0))
            expected = expected + separate(padded)[..., delay : delay + 3000]
        unshifted = separate(mixture)
    torch.testing.assert_close(shifted, expected / 3)
    assert shifted.shape == unshifted.shape
    assert not torch.allclose(shifted, unshifted)  # strided convolutions are not shift-invariant
    assert apply_shifts(separate, mixture, 0, 400) is not None

"""sepkit's OpenUnmix is openunmix.model.OpenUnmix 1.3.0: same keys, same numbers."""

from __future__ import annotations

import pytest
import torch

from sepkit.models.openunmix import OpenUnmix, OpenUnmixSeparator


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights and batch-norm statistics far from their initial values, so a key mapped
    to the wrong place shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.4 + 0.3)
    return module.eval()


@pytest.mark.parametrize(
    "arguments",
    [
        {"nb_bins": 2049, "nb_channels": 2, "hidden_size": 32, "max_bin": 1487},
        {"nb_bins": 257, "nb_channels": 1, "hidden_size": 24, "nb_layers": 2},
        {"nb_bins": 257, "nb_channels": 2, "hidden_size": 16, "unidirectional": True},
    ],
)
def test_loads_openunmix_weights_and_gives_the_same_output(without_torchaudio, arguments):
    from openunmix.model import OpenUnmix as ReferenceOpenUnmix

    reference = _randomised(ReferenceOpenUnmix(**arguments), seed=1)
    ours = OpenUnmix(**arguments).eval()

    assert sorted(ours.state_dict()) == sorted(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    for key, value in reference.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape, key

    magnitude = torch.rand(2, arguments["nb_channels"], arguments["nb_bins"], 40) * 3
    with torch.no_grad():
        expected = reference(magnitude.clone())
        actual = ours(magnitude.clone())
    assert actual.shape == magnitude.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_published_umxhq_shape_has_openunmix_parameter_count():
    """umx/umxhq: 8,893,348 parameters per target (open-unmix-pytorch model card)."""
    network = OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487)
    assert sum(p.numel() for p in network.parameters()) == 8_893_348


def test_separator_crops_at_16_khz_and_outputs_magnitudes_per_target():
    model = OpenUnmixSeparator(["vocals", "drums"], hidden_size=16, nb_layers=1)
    assert model.target_models["vocals"].nb_bins == 1487
    mixture = torch.randn(1, 2, 44100)
    outputs = model(mixture)
    assert outputs["magnitudes"].shape == (1, 2, 2, 2049, 44100 // 1024 + 1)
    assert outputs["mixture_spectrogram"].is_complex()
    assert (outputs["magnitudes"] >= 0).all()


def test_statistics_standardise_the_input_of_every_target():
    model = OpenUnmixSeparator(["vocals", "bass"], n_fft=256, hop_length=64, bandwidth=None)
    mixtures = [torch.randn(2, 8000) * scale for scale in (0.5, 1.0, 2.0)]
    statistics = model.compute_statistics(mixtures)
    model.load_statistics(statistics)

    magnitudes = torch.cat([model.stft(m).abs().mean(0).T for m in mixtures])  # (frames, bins)
    for network in model.target_models.values():
        standardised = network.input_normalization(magnitudes)
        mean, std = standardised.mean(0), standardised.std(0, unbiased=False)
        torch.testing.assert_close(mean, torch.zeros(129), atol=1e-3, rtol=0)
        torch.testing.assert_close(std, torch.ones(129), atol=1e-3, rtol=0)

"""The band-split RoFormers' training loss equals the one the reference models compute in
``forward(mixture, target)`` (audio-separator 0.47.1's copies, MSST's recipe)."""

from __future__ import annotations

import pytest
import torch

from sepkit.losses.multi_resolution import MultiResolutionSTFTLoss
from tests.conftest import run_sepkit
from tests.references import audio_separator_roformer


def test_equals_the_reference_models_own_training_loss():
    (bs_roformer,) = audio_separator_roformer("bs_roformer")
    torch.manual_seed(0)
    reference = bs_roformer.BSRoformer(
        dim=16, depth=1, stereo=True, num_stems=2, time_transformer_depth=1,
        freq_transformer_depth=1, freqs_per_bands=(8, 8, 16, 32, 65), stft_n_fft=256,
        stft_hop_length=64, stft_win_length=256, dim_head=8, heads=2,
    ).eval()  # fmt: skip
    mixture = torch.randn(2, 2, 64 * 100)  # a whole number of hops: estimates keep the length
    target = torch.randn(2, 2, 2, 64 * 100)
    with torch.no_grad():
        expected = reference(mixture, target)
        estimates = reference(mixture)
    loss = MultiResolutionSTFTLoss(min_n_fft=256)({"waveforms": estimates}, {"waveforms": target})
    print(f"loss {loss.item():.6f}, reference {expected.item():.6f}")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_is_the_default_loss_of_the_roformer_configs_and_refuses_bad_windows():
    for model in ("bs_roformer", "mel_roformer"):
        result = run_sepkit("train", f"model={model}", "--cfg", "job", check=True)
        assert "_target_: sepkit.losses.multi_resolution.MultiResolutionSTFTLoss" in result.stdout
    with pytest.raises(ValueError, match=r"loss.window_sizes=\[\]"):
        MultiResolutionSTFTLoss(window_sizes=[])

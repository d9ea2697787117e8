"""Community band-split RoFormer checkpoints in the Music-Source-Separation-Training layout
(a state dict and its YAML), written here from the reference classes, load into sepkit's
models with their weights, targets and inference segments; broken YAMLs give one line
naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sepkit.errors import SepkitError
from sepkit.models.bs_roformer import BSRoformer
from sepkit.models.mel_roformer import MelBandRoformer
from sepkit.models.pretrained.msst import load_msst
from sepkit.separate.separator import Separator
from tests.test_roformer import SMALL, reference_model

# an MSST YAML as the community shares them (tuples tagged !!python/tuple), small shapes
BS_YAML = """\
audio:
  chunk_size: 352800
  dim_f: 1024
  dim_t: 801
  hop_length: 64
  n_fft: 256
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.000
model:
  dim: 32
  depth: 2
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: !!python/tuple
  - 8
  - 8
  - 16
  - 32
  - 65
  dim_head: 16
  heads: 2
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 1025
  stft_n_fft: 256
  stft_hop_length: 64
  stft_win_length: 256
  stft_normalized: false
  mask_estimator_depth: 2
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: !!python/tuple
  - 4096
  - 2048
  - 1024
  - 512
  - 256
  multi_stft_hop_size: 147
  multi_stft_normalized: False
training:
  batch_size: 2
  instruments:
  - vocals
  - other
  lr: 1.0e-05
  target_instrument: vocals
inference:
  batch_size: 1
  dim_t: 801
  num_overlap: 2
"""
MEL_YAML = """\
audio:
  chunk_size: 264600
  num_channels: 2
  sample_rate: 44100
model:
  dim: 32
  depth: 2
  stereo: true
  num_stems: 2
  time_transformer_depth: 1
  freq_transformer_depth: 1
  num_bands: 8
  dim_head: 16
  heads: 2
  attn_dropout: 0
  ff_dropout: 0
  flash_attn: True
  dim_freqs_in: 1025
  sample_rate: 44100
  stft_n_fft: 256
  stft_hop_length: 64
  stft_win_length: 256
  stft_normalized: False
  mask_estimator_depth: 2
training:
  instruments: [vocals, other]
  target_instrument: null
inference:
  num_overlap: 4
"""


def _write_checkpoint(tmp_path: Path, kind: str, targets: list[str], wrap: bool = False):
    """A reference model with random weights, saved as MSST saves it, and its path."""
    torch.manual_seed(0)
    bands = dict(freqs_per_bands=(8, 8, 16, 32, 65)) if kind == "bs" else dict(num_bands=8)
    extra = dict(mask_estimator_depth=2, attn_dropout=0.0, ff_dropout=0.0)
    reference = reference_model(kind, targets, True, **SMALL, **bands, **extra)
    path = tmp_path / f"model_{kind}.ckpt"
    state_dict = reference.state_dict()
    torch.save({"state_dict": state_dict} if wrap else state_dict, path)
    return reference, path


@pytest.mark.parametrize("wrap", [False, True])
def test_a_bs_roformer_checkpoint_loads_and_separates_as_the_reference(tmp_path, wrap):
    reference, checkpoint = _write_checkpoint(tmp_path, "bs", ["vocals"], wrap=wrap)
    config = tmp_path / "config_vocals_bs_roformer.yaml"
    config.write_text(BS_YAML)
    model = load_msst(checkpoint, config, device="cpu")
    assert isinstance(model, BSRoformer) and not model.training
    assert model.targets == ["vocals"] and model.nb_channels == 2
    # MSST's chunk of 352800 samples, stepped by half a chunk (num_overlap 2)
    assert model.segment_seconds == 8.0 and model.segment_overlap == 0.5
    separator = Separator(model, device="cpu")
    assert (separator.segment, separator.overlap) == (8.0, 0.5)

    mixture = 0.5 * torch.randn(1, 2, 22050)
    with torch.no_grad():
        expected = reference(mixture)
        estimate = model(mixture)["waveforms"][:, 0, :, : expected.shape[-1]]
    difference = (estimate - expected).abs().max().item()
    print(f"largest difference {difference:.2e}")
    assert difference < 1e-4
    stems = separator.separate(mixture[0], 44100)  # one segment: the model on the whole input
    assert list(stems) == ["vocals"] and stems["vocals"].shape == mixture[0].shape
    streamed = (stems["vocals"][:, : expected.shape[-1]] - expected[0]).abs().max().item()
    print(f"largest difference through Separator {streamed:.2e}")
    assert streamed < 1e-4


def test_a_mel_roformer_checkpoint_loads_with_its_yaml_beside_it(tmp_path):
    reference, checkpoint = _write_checkpoint(tmp_path, "mel", ["vocals", "other"])
    checkpoint.with_suffix(".yaml").write_text(MEL_YAML)
    model = load_msst(checkpoint)
    assert isinstance(model, MelBandRoformer)
    assert model.targets == ["vocals", "other"]
    # num_overlap 4 steps a quarter chunk, weighed as MSST's demix weighs them
    assert model.segment_seconds == 6.0 and model.segment_overlap == 0.75
    mixture = 0.5 * torch.randn(1, 2, 22050)
    with torch.no_grad():
        difference = (model(mixture)["waveforms"] - reference(mixture)).abs().max().item()
    print(f"largest difference {difference:.2e}")
    assert difference < 1e-4


def _edited(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


BS_MODEL_SECTION = BS_YAML[BS_YAML.index("model:") : BS_YAML.index("training:")]
BROKEN = [
    (BS_YAML.replace(BS_MODEL_SECTION, ""), "no 'model' section"),
    (_edited(BS_YAML, "  freqs_per_bands: !!python/tuple\n  - 8\n  - 8\n  - 16\n  - 32\n  - 65\n",
             ""), "cannot tell the architecture"),
    (_edited(BS_YAML, "  instruments:\n  - vocals\n  - other\n", "").replace(
        "target_instrument: vocals", "target_instrument: null"), "training: no instruments"),
    (_edited(BS_YAML, "target_instrument: vocals", "target_instrument: null"),
     r"model.num_stems is 1 but training names 2 stem\(s\)"),
    (_edited(BS_YAML, "  depth: 2\n", "  depth: 2\n  hyper_connections: 4\n"),
     "model: .*hyper_connections"),
    (_edited(BS_YAML, "  dim: 32\n", "  dim: 64\n"), "model_bs.ckpt: .*is .*yaml its YAML"),
    (_edited(BS_YAML, "num_overlap: 2", "num_overlap: 0.5"), "inference.num_overlap=0.5"),
    ("model: [unclosed\n", "not a readable MSST YAML"),
    (BS_YAML.replace("!!python/tuple", "!!python/object/apply:os.system"), "not a readable"),
]  # fmt: skip


@pytest.mark.parametrize("text, message", BROKEN)
def test_a_broken_msst_config_is_one_line_naming_the_file(tmp_path, text, message):
    _, checkpoint = _write_checkpoint(tmp_path, "bs", ["vocals"])
    config = tmp_path / "broken.yaml"
    config.write_text(text)
    with pytest.raises(SepkitError, match=message) as error:
        load_msst(checkpoint, config)
    assert "\n" not in str(error.value)
    if "num_overlap" not in message:
        assert str(config) in str(error.value) or str(checkpoint) in str(error.value)


def test_a_checkpoint_without_its_yaml_says_what_to_give(tmp_path):
    _, checkpoint = _write_checkpoint(tmp_path, "bs", ["vocals"])
    with pytest.raises(SepkitError, match=r"model_bs\.ckpt: no model_bs\.yaml beside it"):
        load_msst(checkpoint)

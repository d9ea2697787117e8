"""sepkit's Demucs, Conv-TasNet and resampler against demucs 2.0.3 and julius 0.2.8, and
demucs's published models loaded offline from a hub cache the test fills.

Needs ``pip install --no-deps demucs==2.0.3 julius==0.2.8`` (the test install does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sepkit.blocks.resample import SincResample
from sepkit.errors import SepkitError
from sepkit.models.convtasnet import ConvTasNet
from sepkit.models.demucs import Demucs
from sepkit.models.pretrained.demucs import DEMUCS, SOURCES, load_pretrained_demucs


@pytest.fixture(scope="module")
def demucs():
    """The ``demucs`` 2.0.3 package. Its utils module imports ``diffq`` for quantised
    models only (none of the code used here touches it), and diffq has no pure-Python
    release: an empty stand-in module satisfies the import."""
    if "diffq" not in sys.modules:
        stand_in = types.ModuleType("diffq")
        stand_in.DiffQuantizer = stand_in.UniformQuantizer = None
        sys.modules["diffq"] = stand_in
    import demucs.model
    import demucs.pretrained
    import demucs.tasnet
    import demucs.utils

    return demucs


def reference_separation(reference: torch.nn.Module, mixture: torch.Tensor) -> torch.Tensor:
    """demucs's own inference on a batch: pad to the valid length, run, centre-trim
    (``demucs.utils.apply_model`` without shifts or splitting)."""
    from demucs.utils import center_trim

    length = mixture.shape[-1]
    excess = reference.valid_length(length) - length
    with torch.no_grad():
        output = reference(F.pad(mixture, (excess // 2, excess - excess // 2)))
    return center_trim(output, length)


@pytest.mark.parametrize("rates", [(1, 2), (2, 1), (4, 5)])
def test_sinc_resample_equals_julius(rates):
    import julius

    signal = torch.randn(2, 3, 1001)
    ours = SincResample(*rates)(signal)
    torch.testing.assert_close(ours, julius.resample_frac(signal, *rates), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "arguments",
    [
        {"channels": 8},
        {"channels": 8, "normalize": True, "lstm_layers": 1},
        {"channels": 6, "depth": 4, "glu": False, "context": 1, "resample": False},
        {"channels": 4, "growth": 1.5, "rewrite": False, "lstm_layers": 0},
    ],
)
def test_demucs_loads_reference_weights_strictly_and_separates_alike(demucs, arguments):
    torch.manual_seed(0)
    reference = demucs.model.Demucs(sources=SOURCES, **arguments)
    ours = Demucs(targets=SOURCES, **arguments)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert ours.valid_length(12345) == reference.valid_length(12345)
    mixture = torch.randn(2, 2, 12345)  # odd, not a valid length: padding and trimming
    with torch.no_grad():
        ours_output = ours(mixture)["waveforms"]
    torch.testing.assert_close(
        ours_output, reference_separation(reference, mixture), rtol=0, atol=1e-4
    )
    assert ours_output.shape == (2, 4, 2, 12345)


@pytest.mark.parametrize(
    "reference_arguments,our_arguments",
    [
        ({}, {}),
        ({"causal": True, "norm_type": "cLN"}, {"causal": True, "norm": "channel"}),
        ({"norm_type": "BN", "audio_channels": 1}, {"norm": "batch", "nb_channels": 1}),
    ],
)
def test_convtasnet_loads_reference_weights_strictly_and_separates_alike(
    demucs, reference_arguments, our_arguments
):
    torch.manual_seed(0)
    shape = {"N": 32, "L": 20, "B": 16, "H": 24, "P": 3, "X": 3, "R": 2}
    reference = demucs.tasnet.ConvTasNet(sources=SOURCES, **shape, **reference_arguments).eval()
    with torch.no_grad():  # make the norms' and PReLUs' parameters matter
        for parameter in reference.parameters():
            if parameter.dim() <= 1:
                parameter.normal_()
    ours = ConvTasNet(
        targets=SOURCES,
        filters=32,
        kernel_size=20,
        bottleneck_channels=16,
        hidden_channels=24,
        conv_kernel_size=3,
        layers=3,
        repeats=2,
        skip_channels=None,
        mask="relu",
        **{"nb_channels": 2, **our_arguments},
    ).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    channels = reference_arguments.get("audio_channels", 2)
    mixture = torch.randn(2, channels, 20 + 10 * 321)  # frames cover it: the reference's case
    with torch.no_grad():
        expected = reference(mixture)
        torch.testing.assert_close(ours(mixture)["waveforms"], expected, rtol=0, atol=1e-4)


# -- published models -------------------------------------------------------------------

# how demucs.pretrained.load_pretrained builds each published architecture
_REFERENCE_BUILDERS = {
    "demucs": {"function": "demucs", "channels": 64},
    "demucs_extra": {"function": "demucs", "channels": 64},
    "demucs48_hq": {"function": "demucs", "channels": 48},
    "tasnet": {"function": "tasnet"},
    "tasnet_extra": {"function": "tasnet"},
}


def _reference_architecture(demucs, name: str) -> torch.nn.Module:
    builder = dict(_REFERENCE_BUILDERS[name])
    function = getattr(demucs.pretrained, builder.pop("function"))
    return function(pretrained=False, **builder)


def test_registry_names_urls_and_files_are_demucs_2_0_3s(demucs):
    for name, published in DEMUCS.items():
        assert published.signature == demucs.pretrained.PRETRAINED_MODELS[name]
        assert published.url == demucs.pretrained.get_url(name)
    offered = set(demucs.pretrained.PRETRAINED_MODELS) - {"demucs_quantized", "demucs_unittest"}
    assert set(DEMUCS) == offered
    assert demucs.pretrained.SOURCES == SOURCES


@pytest.mark.parametrize("name", sorted(_REFERENCE_BUILDERS))
def test_registry_architectures_are_the_published_ones(demucs, name):
    with torch.device("meta"):  # shapes only, no memory
        reference = _reference_architecture(demucs, name).state_dict()
        ours = DEMUCS[name].build()
    # strict loading fails on any missing, unexpected or differently shaped parameter
    ours.load_state_dict(reference, strict=True, assign=True)
    assert ours.sample_rate == 44100 and ours.nb_channels == 2 and ours.targets == SOURCES


def _fill_hub_cache(demucs, name: str, torch_home: Path) -> torch.nn.Module:
    """Write a random-weight reference model's state dict where torch.hub caches ``name``."""
    torch.manual_seed(1)
    reference = _reference_architecture(demucs, name).eval()
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / DEMUCS[name].filename)
    return reference


@pytest.mark.parametrize("name", ["tasnet", pytest.param("demucs48_hq", marks=pytest.mark.slow)])
def test_pretrained_loads_from_the_hub_cache_and_separates_as_demucs(
    demucs, name, tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = _fill_hub_cache(demucs, name, tmp_path)
    model = load_pretrained_demucs(name)
    assert not model.training
    mixture = 0.1 * torch.randn(1, 2, 2001)  # odd, and not whole Conv-TasNet frames
    with torch.no_grad():
        ours = model(mixture)["waveforms"]
    if name.startswith("tasnet"):
        length = mixture.shape[-1]
        with torch.no_grad():
            expected = reference(F.pad(mixture, (0, model.valid_length(length) - length)))
        expected = expected[..., :length]
    else:
        expected = reference_separation(reference, mixture)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-4)


def test_pretrained_offline_without_cache_names_the_url_and_the_cache_path(tmp_path):
    # in a fresh interpreter whose HTTPS goes to a closed local port: the download is
    # refused at once, and nothing leaves the machine
    script = (
        "from sepkit.errors import SepkitError\n"
        "from sepkit.models.pretrained.demucs import load_pretrained_demucs\n"
        "try:\n"
        "    load_pretrained_demucs('demucs')\n"
        "except SepkitError as error:\n"
        "    print(error)\n"
    )
    environment = {
        **os.environ,
        "TORCH_HOME": str(tmp_path),
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    environment.pop("no_proxy", None)
    environment.pop("NO_PROXY", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    message = result.stdout
    assert "https://dl.fbaipublicfiles.com/demucs/v3.0/demucs-e07c671f.th" in message
    assert str(tmp_path / "hub" / "checkpoints" / "demucs-e07c671f.th") in message


def test_unknown_pretrained_name_lists_the_published_ones():
    with pytest.raises(SepkitError, match="demucs48_hq"):
        load_pretrained_demucs("demucs_v4")

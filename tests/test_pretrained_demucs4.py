"""demucs 4.1.0's published models (htdemucs, htdemucs_ft, htdemucs_6s, hdemucs_mmi) loaded
from a torch hub cache the test fills with packages written by demucs 4.1.0's own code
(``states.serialize_model`` then ``torch.save``, as its training does), under the published
file names: small configurations of the published classes, random weights.

The loader must never import demucs nor run anything a file names.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf
from references import demucs4, reference_folder

from sepkit.errors import SepkitError
from sepkit.models.bag import BagOfModels
from sepkit.models.base import InferenceOptions, SeparationModel
from sepkit.models.hdemucs import HDemucs
from sepkit.models.htdemucs import HTDemucs
from sepkit.models.pretrained import demucs4 as published_demucs4
from sepkit.models.pretrained.demucs4 import DEMUCS4, load_pretrained_demucs4
from sepkit.models.pretrained.hub import cached_file, hub_cache_path
from sepkit.models.pretrained.registry import load_pretrained
from sepkit.separate import Separator

SOURCES = ["drums", "bass", "other", "vocals"]
SEGMENT = Fraction(39, 200)  # seconds, a Fraction as in the published htdemucs packages
LENGTH = int(SEGMENT * 44100)  # the training length: demucs's apply_model pads to it
# small versions of the published architectures (same classes, same package layout)
SMALL_HTDEMUCS = {"channels": 8, "depth": 3, "t_layers": 1, "nfft": 1024, "segment": SEGMENT}
SMALL_HDEMUCS = {"channels": 8, "depth": 3, "nfft": 256}
ARCHITECTURES = {  # name -> (demucs class, sources, arguments)
    "htdemucs": ("HTDemucs", SOURCES, SMALL_HTDEMUCS),
    "htdemucs_ft": ("HTDemucs", SOURCES, SMALL_HTDEMUCS),
    "htdemucs_6s": ("HTDemucs", [*SOURCES, "guitar", "piano"], SMALL_HTDEMUCS),
    "hdemucs_mmi": ("HDemucs", SOURCES, SMALL_HDEMUCS),
}


def _write_packages(checkpoints: Path) -> dict[str, torch.nn.Module]:
    """Write every published file of every model as demucs's training does; returns the
    reference model of each file name, holding the weights as stored (half precision)."""
    checkpoints.mkdir(parents=True)
    references = {}
    # inside the folder's import context: pickle names the classes by their import path
    with reference_folder("demucs4", "demucs", "einops"):
        states = importlib.import_module("demucs.states")
        modules = {"HTDemucs": "demucs.htdemucs", "HDemucs": "demucs.hdemucs"}
        for name, published in DEMUCS4.items():
            class_name, sources, arguments = ARCHITECTURES[name]
            klass = getattr(importlib.import_module(modules[class_name]), class_name)
            for index, file in enumerate(published.files):
                torch.manual_seed(index)
                model = klass(sources=list(sources), **arguments)
                package = states.serialize_model(model, OmegaConf.create({"model": "x"}))
                model.load_state_dict(package["state"])  # the half-precision weights
                torch.save(package, checkpoints / file)
                references[file] = model.eval()
    return references


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A $TORCH_HOME whose hub cache holds every published file, and the references."""
    torch_home = tmp_path_factory.mktemp("torch")
    return torch_home, _write_packages(torch_home / "hub" / "checkpoints")


@pytest.fixture
def cache(published, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.nn.Module]:
    torch_home, references = published
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return references


def _assert_close(ours: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    print(f"{what}: largest difference {(ours - expected).abs().max().item():.2e}")
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-4)


def test_listing_is_demucs_4_1_0s_remote_folder():
    (pretrained,) = demucs4("pretrained")
    urls = pretrained._parse_remote_files(pretrained.REMOTE_ROOT / "files.txt")
    for name, entry in DEMUCS4.items():
        listing = yaml.safe_load((pretrained.REMOTE_ROOT / f"{name}.yaml").read_text())
        assert entry.urls() == [urls[signature] for signature in listing["models"]], name
        weights = listing.get("weights")
        assert entry.weights == (None if weights is None else tuple(map(tuple, weights)))
        assert entry.segment == listing.get("segment"), name


def test_htdemucs_separates_as_demucs(cache):
    model = load_pretrained("htdemucs")
    assert isinstance(model, HTDemucs) and not model.training
    assert model.targets == SOURCES and model.segment_seconds == float(SEGMENT)
    reference = cache[DEMUCS4["htdemucs"].files[0]]
    for length in (LENGTH, LENGTH // 2 + 1):  # the training length, and a padded one
        mixture = torch.randn(1, 2, length)
        with torch.no_grad():
            _assert_close(model.separate(mixture), reference(mixture), f"htdemucs, {length}")


def test_htdemucs_ft_is_a_bag_that_separates_as_demucs_apply_model(cache):
    (apply,) = demucs4("apply")
    bag = load_pretrained("htdemucs_ft")
    assert isinstance(bag, BagOfModels) and len(bag.models) == 4 and not bag.training
    assert all(isinstance(member, HTDemucs) for member in bag.models)
    assert bag.targets == SOURCES and bag.segment_seconds == float(SEGMENT)
    published = DEMUCS4["htdemucs_ft"]
    members = [cache[file] for file in published.files]
    reference = apply.BagOfModels(members, [list(row) for row in published.weights])
    mixture = torch.randn(1, 2, LENGTH)
    with torch.no_grad():
        ours = bag.separate(mixture)
        expected = apply.apply_model(reference, mixture, shifts=0, split=False)
        _assert_close(ours, expected, "htdemucs_ft against apply_model")
        for stem, member in enumerate(members):  # one-hot weights: stem k from model k
            _assert_close(ours[:, stem], member(mixture)[:, stem], f"htdemucs_ft stem {stem}")


def test_htdemucs_ft_separates_in_segments_as_each_stems_own_model(cache):
    # the Separator cuts the song into the bag's segments and cross-fades them: stem k is
    # model k's, cut the same way
    bag = load_pretrained("htdemucs_ft")
    audio = torch.randn(2, 3 * LENGTH + 1000)
    stems = Separator(bag, device="cpu").separate(audio, 44100)
    assert list(stems) == SOURCES
    for source, member in zip(SOURCES, bag.models, strict=True):
        alone = Separator(member, device="cpu").separate(audio, 44100)[source]
        _assert_close(stems[source], alone, f"htdemucs_ft in segments, {source}")


def test_htdemucs_6s_has_six_targets(cache):
    model = load_pretrained("htdemucs_6s")
    assert model.targets == ["drums", "bass", "other", "vocals", "guitar", "piano"]
    mixture = torch.randn(1, 2, LENGTH)
    with torch.no_grad():
        expected = cache[DEMUCS4["htdemucs_6s"].files[0]](mixture)
        _assert_close(model.separate(mixture), expected, "htdemucs_6s")


def test_hdemucs_mmi_separates_as_demucs_in_its_44_second_segments(cache):
    model = load_pretrained("hdemucs_mmi")
    assert isinstance(model, HDemucs) and model.segment_seconds == 44.0
    mixture = torch.randn(1, 2, 20001)
    with torch.no_grad():
        expected = cache[DEMUCS4["hdemucs_mmi"].files[0]](mixture)
        _assert_close(model.separate(mixture), expected, "hdemucs_mmi")


def test_loading_imports_no_demucs(published):
    # a fresh interpreter: the test's own reference imports cannot hide an import
    script = (
        "import sys\n"
        "from sepkit.models.pretrained import load_pretrained\n"
        "for name in ('htdemucs_ft', 'hdemucs_mmi'):\n"
        "    print(type(load_pretrained(name)).__name__)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'demucs'))\n"
    )
    environment = {
        **os.environ,
        "TORCH_HOME": str(published[0]),
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["BagOfModels", "HDemucs", "[]"]


class Payload:
    """Unpickling calls ``os.system``, which would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Impostor(torch.nn.Module):
    """A class demucs's packages never name."""


@pytest.mark.parametrize("klass", ["payload", "impostor"])
def test_a_file_naming_another_global_is_refused_and_nothing_runs(klass, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "ran"
    package = {"klass": Payload(marker) if klass == "payload" else Impostor, "args": ()}
    path = hub_cache_path(DEMUCS4["htdemucs"].urls()[0])
    path.parent.mkdir(parents=True)
    torch.save({**package, "kwargs": {"sources": SOURCES}, "state": {}}, path)
    named = "system" if klass == "payload" else "Impostor"
    with pytest.raises(SepkitError, match=rf"{path} names .*{named}.*nothing in the file"):
        load_pretrained("htdemucs")
    assert not marker.exists()


def test_quantized_weights_are_refused_by_name(published, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = hub_cache_path(DEMUCS4["htdemucs"].urls()[0])
    path.parent.mkdir(parents=True)
    with reference_folder("demucs4", "demucs", "einops"):
        klass = importlib.import_module("demucs.htdemucs").HTDemucs
        package = {"klass": klass, "args": (), "kwargs": {"sources": SOURCES}}
        torch.save({**package, "state": {"__quantized": True}}, path)
    with pytest.raises(SepkitError, match="DiffQ-quantized"):
        load_pretrained("htdemucs")


def test_a_download_with_another_checksum_is_refused_and_not_kept(tmp_path, monkeypatch):
    remote = tmp_path / "remote"
    remote.mkdir()
    monkeypatch.setattr(published_demucs4, "ROOT_URL", remote.as_uri() + "/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = DEMUCS4["htdemucs"].urls()[0]
    (remote / Path(url).name).write_bytes(b"not the published file")
    with pytest.raises(SepkitError, match="invalid hash value"):
        load_pretrained_demucs4("htdemucs")
    assert not hub_cache_path(url).exists()
    # the checksum of the bytes it holds is accepted
    import hashlib

    checksum = hashlib.sha256(b"not the published file").hexdigest()[:8]
    assert cached_file(url, "test", hash_prefix=checksum).read_bytes().startswith(b"not")


def test_unknown_name_lists_the_published_ones():
    with pytest.raises(SepkitError, match="htdemucs_ft"):
        load_pretrained_demucs4("htdemucs_v5")


# -- the bag itself ----------------------------------------------------------------------


class Gains(SeparationModel):
    """Each target is the mixture times a gain: a stand-in for a trained separator."""

    segment_seconds = 5.0

    def __init__(self, gains: list[float], targets: tuple[str, ...] = ("a", "b")) -> None:
        super().__init__(list(targets), 8000, 1)
        self.register_buffer("gains", torch.tensor(gains))

    def forward(self, mixture):
        return {"waveforms": mixture[:, None] * self.gains[None, :, None, None]}


def test_bag_weights_each_target_and_adds_one_residual():
    first, second = Gains([1.0, 2.0]), Gains([3.0, 5.0])
    second.segment_seconds = 2.0
    bag = BagOfModels([first, second], [[1.0, 0.0], [3.0, 1.0]])
    assert bag.segment_seconds == 2.0 and bag.outputs == ("waveforms",)
    mixture = torch.ones(1, 1, 4)
    estimates = bag.separate(mixture, InferenceOptions(residual=True))
    target_a = (1 * 1.0 + 3 * 3.0) / 4  # weighted mean of the two models' gains
    expected = torch.tensor([target_a, 5.0, 1 - target_a - 5.0])[None, :, None, None]
    torch.testing.assert_close(estimates, expected.expand(1, 3, 1, 4))
    torch.testing.assert_close(bag(mixture)["waveforms"], estimates[:, :2])


@pytest.mark.parametrize(
    ("models", "weights", "message"),
    [
        ([], None, "at least one model"),
        ([Gains([1.0, 1.0]), Gains([1.0, 1.0], ("a", "c"))], None, "targets"),
        ([Gains([1.0, 1.0])], [[1.0]], "one weight per target"),
        ([Gains([1.0, 1.0]), Gains([1.0, 1.0])], [[1.0, 0.0], [1.0, 0.0]], "positive total"),
    ],
)
def test_bag_refuses_models_or_weights_that_do_not_fit(models, weights, message):
    with pytest.raises(SepkitError, match=message):
        BagOfModels(models, weights)


@pytest.mark.slow
def test_the_commands_default_to_htdemucs_and_run_htdemucs_ft(cache, tmp_path):
    """The README's commands with the cache filled: `sepkit separate song.wav` (htdemucs),
    `pretrained=htdemucs_ft`, and `sepkit eval pretrained=htdemucs dataset=toy`."""
    import numpy as np
    import soundfile

    from tests.conftest import TINY_TOY, run_sepkit

    song = tmp_path / "song.wav"
    rng = np.random.default_rng(0)
    soundfile.write(song, (0.1 * rng.standard_normal((3 * LENGTH, 2))).astype("float32"), 44100)
    out = tmp_path / "separated"
    run_sepkit("separate", str(song), f"out_dir={out}", check=True)
    run_sepkit("separate", str(song), "pretrained=htdemucs_ft", f"out_dir={out}", check=True)
    for name in ("htdemucs", "htdemucs_ft"):
        written = sorted(p.name for p in (out / name / "song").iterdir())
        assert written == [f"{source}.wav" for source in sorted(SOURCES)], name
        stem, rate = soundfile.read(out / name / "song" / "vocals.wav")
        assert rate == 44100 and stem.shape == (3 * LENGTH, 2)

    report = tmp_path / "eval"
    result = run_sepkit("eval", "pretrained=htdemucs", "dataset=toy", *TINY_TOY,
                        f"out_dir={report}", check=True)  # fmt: skip
    assert "htdemucs" in result.stdout and "vocals" in result.stdout, result.stdout

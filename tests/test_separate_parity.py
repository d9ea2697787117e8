"""``sepkit separate pretrained=umxhq`` gives what openunmix's own Separator gives.

The torch hub cache (``$TORCH_HOME``) is filled with four files named as umxhq's Zenodo
files, holding state dicts of ``openunmix.model.OpenUnmix`` 1.3.0 with random weights: the
published weights cannot be downloaded here, and random ones test the same loading path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from sepkit.models.pretrained import OPEN_UNMIX, hub_cache_path
from tests.conftest import run_sepkit

SAMPLE_RATE = 44100


def synthetic_song(seconds: float, channels: int = 2, seed: int = 0) -> np.ndarray:
    """(time, channels) float32 music-like audio, peak about 0.6: a sung line, a bass line,
    chords and noise bursts on a beat, panned differently."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE

    def harmonics(frequency: np.ndarray, count: int) -> np.ndarray:
        phase = 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
        return sum(np.sin(k * phase) / k for k in range(1, count + 1))

    def steps(values: list[float], period: float) -> np.ndarray:
        return np.asarray(values)[(t / period).astype(int) % len(values)]

    voice = 0.15 * harmonics(steps([220, 247, 262, 294, 330], 0.5), 6)
    voice *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t).clip(0)
    bass = 0.15 * harmonics(steps([55, 55, 73, 82], 1.0), 4)
    drums = 0.25 * np.exp(-(t % 0.25) / 0.03) * rng.standard_normal(t.shape)
    chords = 0.05 * sum(harmonics(steps([f, f * 1.5], 2.0), 3) for f in (262, 330))
    pans = rng.uniform(0.4, 1.0, size=(4, channels))
    song = sum(p[None] * s[:, None] for p, s in zip(pans, [voice, bass, drums, chords]))
    return song.astype(np.float32)


def randomised_openunmix_state(seed: int) -> dict[str, torch.Tensor]:
    """A state dict of openunmix.model.OpenUnmix in umxhq's shape: torch's random
    initialisation, plus input/output statistics and batch-norm running statistics away
    from their defaults, so every published key matters."""
    from openunmix.model import OpenUnmix

    torch.manual_seed(seed)
    network = OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if name in ("input_mean", "output_mean"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.4 - 0.2)
            elif name in ("input_scale", "output_scale") or name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return network.eval().state_dict()


@pytest.fixture
def umxhq_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_torchaudio):
    """$TORCH_HOME whose hub cache holds umxhq's four files (random weights); returns the
    state dicts by target."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    release = OPEN_UNMIX["umxhq"]
    states = {}
    for index, target in enumerate(release.targets):
        states[target] = randomised_openunmix_state(seed=index + 1)
        cache_file = hub_cache_path(release.url(target))
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(states[target], cache_file)
    return states


@pytest.fixture
def one_thread():
    """One torch thread here and in the CLI: on a machine shared with other jobs, two
    threads that wait for each other make this test ten times slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_separation(states: dict, audio: np.ndarray) -> dict[str, np.ndarray]:
    """openunmix 1.3.0's Separator (niter=1, residual=False) on (time, channels) audio."""
    from openunmix.model import OpenUnmix, Separator

    target_models = {}
    for target, state in states.items():
        target_models[target] = OpenUnmix(
            nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487
        ).eval()
        target_models[target].load_state_dict(state)
    separator = Separator(target_models, niter=1, residual=False).eval()
    with torch.no_grad():
        estimates = separator(torch.from_numpy(audio.T.copy())[None])[0]
    return {target: estimates[i].numpy().T for i, target in enumerate(states)}


def test_pretrained_umxhq_matches_openunmix_separator(umxhq_hub_cache, one_thread, tmp_path: Path):
    audio = synthetic_song(20.0)
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, audio, SAMPLE_RATE, subtype="FLOAT")
    out_dir = tmp_path / "separated"

    result = run_sepkit(
        "separate", str(clip), "pretrained=umxhq", "niter=1", "subtype=FLOAT",
        f"out_dir={out_dir}", "progress=false", "threads=1", check=True,
    )  # fmt: skip

    expected = reference_separation(umxhq_hub_cache, audio)
    written = sorted(p.name for p in (out_dir / "umxhq" / "clip").iterdir())
    assert written == sorted(f"{target}.wav" for target in expected), result.stderr
    for target, reference in expected.items():
        stem, rate = soundfile.read(out_dir / "umxhq" / "clip" / f"{target}.wav", dtype="float32")
        assert rate == SAMPLE_RATE and stem.shape == audio.shape
        assert np.abs(reference).max() > 0.01  # the random networks do pass sound
        assert np.abs(stem - reference).max() <= 1e-4, target


def test_offline_without_cache_names_the_url_and_the_cache_path(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # a proxy that refuses connections stands for no network, wherever the test runs
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    clip = tmp_path / "clip.wav"
    soundfile.write(clip, synthetic_song(1.0), SAMPLE_RATE)

    result = run_sepkit("separate", str(clip), f"out_dir={tmp_path / 'out'}")

    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    # the default model, htdemucs: one file
    from sepkit.models.pretrained.demucs4 import DEMUCS4

    htdemucs = DEMUCS4["htdemucs"]
    assert htdemucs.urls()[0] in error, error
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / htdemucs.files[0]) in error
    assert not (tmp_path / "out").exists()

    result = run_sepkit("separate", str(clip), "pretrained=umxhq", f"out_dir={tmp_path / 'out'}")
    error = result.stderr.strip().splitlines()[-1]
    release = OPEN_UNMIX["umxhq"]
    first = release.targets[0]
    assert result.returncode != 0 and release.url(first) in error
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / f"{release.files[first]}.pth") in error
    assert not (tmp_path / "out").exists()


def test_umxl_prints_its_non_commercial_licence(tmp_path: Path, monkeypatch, capsys):
    """umxl loads from its own four files (hidden size 1024) and says it is CC BY-NC-SA."""
    from sepkit.models.openunmix import OpenUnmix
    from sepkit.models.pretrained import load_pretrained

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    release = OPEN_UNMIX["umxl"]
    for target in release.targets:
        network = OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=1024, max_bin=1487)
        cache_file = hub_cache_path(release.url(target))
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), cache_file)

    model = load_pretrained("umxl")

    assert model.target_models["vocals"].hidden_size == 1024
    assert "CC BY-NC-SA 4.0" in capsys.readouterr().err


def test_openunmix_model_folder_loads_with_its_training_arguments(tmp_path: Path):
    """A folder as Open-Unmix's scripts/train.py writes it: separator.json, <target>.json
    with the training arguments, <target>.pth; here a unidirectional mono model with
    2 LSTM layers, which Open-Unmix's own loader would rebuild wrongly."""
    import json

    from sepkit.models.openunmix import OpenUnmix
    from sepkit.models.pretrained import load_pretrained

    folder = tmp_path / "my-umx"
    folder.mkdir()
    separator = {"nfft": 1024, "nhop": 256, "sample_rate": 16000, "nb_channels": 1}
    (folder / "separator.json").write_text(json.dumps(separator))
    networks = {}
    for target in ("speech", "noise"):
        networks[target] = OpenUnmix(
            nb_bins=513, nb_channels=1, hidden_size=32, nb_layers=2, unidirectional=True,
            max_bin=385,
        )  # fmt: skip
        arguments = {"hidden_size": 32, "nb_channels": 1, "unidirectional": True}
        (folder / f"{target}.json").write_text(json.dumps({"args": {**arguments, "nfft": 1024}}))
        torch.save(networks[target].state_dict(), folder / f"{target}.pth")

    model = load_pretrained(str(folder))

    assert model.targets == ["noise", "speech"]
    assert (model.sample_rate, model.nb_channels) == (16000, 1)
    magnitude = torch.rand(1, 1, 513, 20)
    for target, network in networks.items():
        torch.testing.assert_close(
            model.target_models[target].eval()(magnitude), network.eval()(magnitude)
        )


def test_parity_clip_is_shorter_than_one_segment():
    """The parity above runs the whole clip as one segment: Open-Unmix's default segment
    is longer than 20 s."""
    from sepkit.models.openunmix import OpenUnmixSeparator

    assert OpenUnmixSeparator.segment_seconds > 20

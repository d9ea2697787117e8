"""The generated toy MUSDB18 set: deterministic, atomic, readable by the real musdb package."""

import json
from pathlib import Path

import musdb
import numpy as np
import pytest
import soundfile

from sepkit.data import ToyMUSDB, generate_toy_musdb
from sepkit.data.toy import TOY_MARKER
from sepkit.errors import SepkitError

SMALL = {"nb_train_tracks": 3, "nb_test_tracks": 1, "train_duration": 2.0, "test_duration": 1.5}
STEMS = ["drums", "bass", "other", "vocals"]


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return generate_toy_musdb(tmp_path_factory.mktemp("toy") / "set", seed=0, **SMALL)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.wav"))}


def test_layout_and_format(toy_root):
    tracks = sorted((toy_root / "train").iterdir())
    assert len(tracks) == 3 and len(list((toy_root / "test").iterdir())) == 1
    for track in tracks:
        for stem in ["mixture", *STEMS]:
            info = soundfile.info(str(track / f"{stem}.wav"))
            assert (info.samplerate, info.channels, info.frames) == (44100, 2, 2 * 44100)
            assert info.subtype == "FLOAT"
    marker = json.loads((toy_root / TOY_MARKER).read_text())
    assert marker["seed"] == 0 and marker["nb_train_tracks"] == 3


def test_mixture_is_exactly_the_float32_sum_of_the_stems_in_any_order(toy_root):
    for track in sorted((toy_root / "train").iterdir()):
        stems = {stem: soundfile.read(track / f"{stem}.wav", dtype="float32")[0] for stem in STEMS}
        mixture = soundfile.read(track / "mixture.wav", dtype="float32")[0]
        for order in [STEMS, STEMS[::-1], ["vocals", "drums", "other", "bass"]]:
            total = np.zeros_like(mixture)
            for stem in order:
                total = total + stems[stem]
            np.testing.assert_array_equal(total, mixture)


def test_every_stem_sounds_and_has_some_silence_or_rests(toy_root):
    for track in sorted((toy_root / "train").iterdir()):
        for stem in STEMS:
            audio = soundfile.read(track / f"{stem}.wav")[0]
            assert np.sqrt(np.mean(audio**2)) > 1e-3, (track, stem)
            assert np.abs(audio).max() < 1


def test_stems_occupy_their_own_frequency_ranges(toy_root):
    """Bass sits low, vocals and chords in the middle, drums span kick to hi-hats."""

    def share(audio: np.ndarray, low: float, high: float) -> float:
        power = np.abs(np.fft.rfft(audio.mean(axis=1))) ** 2
        frequencies = np.fft.rfftfreq(len(audio), 1 / 44100)
        return power[(frequencies >= low) & (frequencies < high)].sum() / power.sum()

    for track in sorted((toy_root / "train").iterdir()):
        audio = {stem: soundfile.read(track / f"{stem}.wav")[0] for stem in STEMS}
        assert share(audio["bass"], 0, 160) > 0.8
        assert share(audio["vocals"], 0, 160) < 0.01 and share(audio["other"], 0, 200) < 0.01
        assert share(audio["vocals"], 200, 5000) > 0.9 and share(audio["other"], 200, 5000) > 0.9
        assert share(audio["drums"], 0, 200) > 0.3  # kick
        assert share(audio["drums"], 1000, 22050) > 0.05  # snare and hats
        assert share(audio["drums"], 7000, 22050) > 10 * share(audio["vocals"], 7000, 22050)


def test_same_seed_same_bytes_other_seed_other_bytes(toy_root, tmp_path):
    again = generate_toy_musdb(tmp_path / "again", seed=0, **SMALL)
    assert file_bytes(again) == file_bytes(toy_root)
    other = generate_toy_musdb(tmp_path / "other", seed=1, **SMALL)
    assert file_bytes(other).keys() == file_bytes(toy_root).keys()
    for name, content in file_bytes(other).items():
        assert content != file_bytes(toy_root)[name], name


def test_existing_set_reused_and_other_parameters_refused(toy_root):
    before = {path: path.stat().st_mtime_ns for path in toy_root.rglob("*.wav")}
    assert generate_toy_musdb(toy_root, seed=0, **SMALL) == toy_root
    assert {path: path.stat().st_mtime_ns for path in toy_root.rglob("*.wav")} == before
    with pytest.raises(SepkitError, match="other parameters"):
        generate_toy_musdb(toy_root, seed=5, **SMALL)


def test_generation_leaves_no_temporary_folders(tmp_path):
    generate_toy_musdb(tmp_path / "set", seed=3, **SMALL)
    assert [path.name for path in tmp_path.iterdir()] == ["set"]


def test_real_musdb_package_reads_the_layout(toy_root):
    database = musdb.DB(root=str(toy_root), is_wav=True)
    assert len(database) == 4
    track = database.tracks[0]
    assert track.rate == 44100 and set(track.sources) == set(STEMS)
    # musdb decodes through ffmpeg at 16 bits: equal to the sum up to a few quantisation steps
    total = sum(track.sources[stem].audio for stem in STEMS)
    np.testing.assert_allclose(track.audio, total, atol=4 / 32768)


def test_toy_dataset_generates_into_the_cache_and_holds_out_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPKIT_CACHE", str(tmp_path))
    data = ToyMUSDB(toy_seed=0, **SMALL)
    assert data.root.parent == tmp_path and data.root.name.startswith("toy-musdb-")
    assert file_bytes(data.root) == file_bytes(
        generate_toy_musdb(tmp_path / "direct", seed=0, **SMALL)
    )
    train = [track.name for track in data.train_tracks()]
    valid = [track.name for track in data.valid_tracks()]
    assert len(train) == 2 and len(valid) == 1 and not set(train) & set(valid)
    assert [track.name for track in data.test_tracks()] == ["Sepkit Toy - Test 00"]
    # another parameter set gets its own folder
    other = ToyMUSDB(toy_seed=1, **SMALL)
    assert other.root != data.root

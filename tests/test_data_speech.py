"""Speech datasets: the toy speech set read through WSJ0Mix, and a LibriMix layout from CSVs."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from sepkit.data import LibriMix, ToySpeech, WSJ0Mix, generate_toy_speech, read_track
from sepkit.errors import SepkitError

SMALL = {"nb_train": 3, "nb_valid": 2, "nb_test": 1, "min_duration": 1.0, "max_duration": 1.5}


@pytest.fixture(scope="module")
def toy_speech_root(tmp_path_factory) -> Path:
    return generate_toy_speech(tmp_path_factory.mktemp("speech") / "set", seed=0, **SMALL)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*.wav"))}


def one_line_error(match, call):
    with pytest.raises(SepkitError, match=match) as caught:
        call()
    assert "\n" not in str(caught.value)
    return str(caught.value)


# --- toy speech -----------------------------------------------------------------------------


def test_toy_speech_layout_and_exact_mixtures(toy_speech_root):
    for split, count in [("tr", 3), ("cv", 2), ("tt", 1)]:
        mixtures = sorted((toy_speech_root / split / "mix").glob("*.wav"))
        assert len(mixtures) == count
        for mixture_path in mixtures:
            mixture, rate = soundfile.read(mixture_path, dtype="float32")
            assert rate == 8000 and mixture.ndim == 1 and 8000 <= len(mixture) <= 12000
            speakers = [
                soundfile.read(toy_speech_root / split / s / mixture_path.name, dtype="float32")[0]
                for s in ["s1", "s2"]
            ]
            np.testing.assert_array_equal(speakers[0] + speakers[1], mixture)
            np.testing.assert_array_equal(speakers[1] + speakers[0], mixture)
            for speaker in speakers:
                assert np.sqrt(np.mean(speaker**2)) > 1e-2  # both speakers talk
                assert np.mean(speaker == 0) > 0.02  # with pauses


def test_toy_speech_speakers_differ_in_pitch(toy_speech_root):
    """The two speakers of a mixture are told apart by pitch or formants: their spectra differ."""
    mixture_path = sorted((toy_speech_root / "tr" / "mix").glob("*.wav"))[0]
    spectra = []
    for speaker in ["s1", "s2"]:
        audio = soundfile.read(toy_speech_root / "tr" / speaker / mixture_path.name)[0]
        spectrum = np.abs(np.fft.rfft(audio, 16000))
        spectra.append(spectrum / np.linalg.norm(spectrum))
    assert float(spectra[0] @ spectra[1]) < 0.8


def test_toy_speech_is_deterministic_by_seed(toy_speech_root, tmp_path):
    assert file_bytes(generate_toy_speech(tmp_path / "again", seed=0, **SMALL)) == file_bytes(
        toy_speech_root
    )
    other = file_bytes(generate_toy_speech(tmp_path / "other", seed=1, **SMALL))
    assert not set(other.items()) & set(file_bytes(toy_speech_root).items())


def test_three_speaker_toy_speech(tmp_path):
    root = generate_toy_speech(tmp_path / "three", n_src=3, seed=0, **SMALL)
    data = WSJ0Mix(root=str(root), n_src=3, cache_dir=str(tmp_path / "cache"), segment=0.5)
    assert data.targets == ["s1", "s2", "s3"]
    mixture, sources = data.training_set()[0, 0]
    assert mixture.shape == (1, 4000) and sources.shape == (3, 1, 4000)
    whole_mixture, whole_sources = read_track(data.test_tracks()[0], nb_channels=1)
    torch.testing.assert_close(whole_sources.sum(dim=0), whole_mixture, rtol=0, atol=0)


def test_toy_speech_dataset_reads_through_wsj0mix(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPKIT_CACHE", str(tmp_path))
    data = ToySpeech(toy_seed=0, segment=2.0, **SMALL)
    assert isinstance(data, WSJ0Mix) and data.root.name.startswith("toy-speech-")
    assert (data.sample_rate, data.nb_channels, data.targets) == (8000, 1, ["s1", "s2"])
    assert len(data.train_tracks()) == 3 and len(data.valid_tracks()) == 2
    assert len(data.test_tracks()) == 1
    training = data.training_set()
    assert len(training) == 3  # each utterance once per epoch
    mixture, sources = training[4, 1]
    assert mixture.shape == (1, 16000) and sources.shape == (2, 1, 16000)
    torch.testing.assert_close(mixture, sources.sum(dim=0), rtol=0, atol=0)
    # utterances (1-1.5 s) shorter than the 2-s segment are zero-padded at the end
    length = data.train_tracks()[1].num_frames
    assert length < 16000 and not mixture[:, length:].any() and mixture[:, :length].any()
    torch.testing.assert_close(training[4, 1], data.training_set()[4, 1], rtol=0, atol=0)
    whole_mixture, whole_sources = data.validation_set()[0]
    assert whole_mixture.shape == (1, data.valid_tracks()[0].num_frames)


def test_speech_gains_remix_the_speakers(toy_speech_root, tmp_path):
    options = {"root": str(toy_speech_root), "cache_dir": str(tmp_path), "segment": 0.5}
    plain = WSJ0Mix(**options).training_set()[2, 0]
    gained = WSJ0Mix(augmentation={"gain_min": 0.5, "gain_max": 1.5}, **options).training_set()[
        2, 0
    ]
    ratios = (gained[1].abs().sum(dim=(1, 2)) / plain[1].abs().sum(dim=(1, 2))).tolist()
    assert all(0.5 <= ratio <= 1.5 for ratio in ratios) and ratios[0] != pytest.approx(ratios[1])
    torch.testing.assert_close(gained[0], gained[1].sum(dim=0))


# --- WSJ0Mix layouts and errors --------------------------------------------------------------


def test_wsj0mix_finds_its_folder_under_rate_and_mode(toy_speech_root, tmp_path):
    for top, inner in [
        (tmp_path / "wsj0-mix", "wav8k/min"),
        (tmp_path / "generated", "2speakers/wav8k/min"),
    ]:
        (top / inner).parent.mkdir(parents=True)
        (top / inner).symlink_to(toy_speech_root, target_is_directory=True)
        data = WSJ0Mix(root=str(top), cache_dir=str(tmp_path / "cache"))
        assert data.root == top / inner
    message = one_line_error(
        "wsj0-mix", lambda: WSJ0Mix(root=str(tmp_path / "wsj0-mix"), mode="max")
    )
    assert "wav8k/max" in message
    one_line_error("dataset.root", lambda: WSJ0Mix())
    one_line_error("n_src", lambda: WSJ0Mix(root=str(toy_speech_root), n_src=4))


def test_wsj0mix_missing_speaker_file_is_named(toy_speech_root, tmp_path):
    copy = tmp_path / "copy"
    for path in toy_speech_root.rglob("*.wav"):
        (copy / path.relative_to(toy_speech_root)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(toy_speech_root)).write_bytes(path.read_bytes())
    victim = sorted((copy / "tt" / "s2").glob("*.wav"))[0]
    victim.unlink()
    data = WSJ0Mix(root=str(copy), cache_dir=str(tmp_path / "cache"))
    message = one_line_error("missing", data.test_tracks)
    assert f"s2/{victim.name}" in message


def test_wsj0mix_serves_another_rate_by_resampling(toy_speech_root, tmp_path):
    data = WSJ0Mix(root=str(toy_speech_root), sample_rate=16000, cache_dir=str(tmp_path))
    track = data.test_tracks()[0]
    original = soundfile.info(str(toy_speech_root / "tt" / "mix" / f"{track.name}.wav")).frames
    assert track.sample_rate == 16000 and track.num_frames == 2 * original
    assert all(tmp_path in path.parents for path in [track.mixture, *track.sources.values()])


# --- LibriMix -------------------------------------------------------------------------------


def write_librimix(storage: Path, recorded_root: Path, rows_per_split: int = 2) -> Path:
    """A Libri2Mix/wav8k/min layout with metadata CSVs whose absolute paths start at
    ``recorded_root`` (pass another folder to simulate a dataset moved after generation)."""
    base = Path("Libri2Mix") / "wav8k" / "min"
    rng = np.random.default_rng(0)
    for split in ["train-360", "dev", "test"]:
        rows = {"mix_clean": [], "mix_both": []}
        for number in range(rows_per_split):
            mixture_id = f"{split}-{number}_a_b"
            frames = 8000 + 800 * number
            audio = {
                name: (0.1 * rng.standard_normal(frames)).astype(np.float32)
                for name in ["s1", "s2", "noise"]
            }
            audio["mix_clean"] = audio["s1"] + audio["s2"]
            audio["mix_both"] = audio["mix_clean"] + audio["noise"]
            for name, samples in audio.items():
                path = storage / base / split / name / f"{mixture_id}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(path, samples, 8000, subtype="FLOAT")
            recorded = {
                name: str(recorded_root / base / split / name / f"{mixture_id}.wav")
                for name in audio
            }
            for mixture_type in rows:
                row = {
                    "mixture_ID": mixture_id,
                    "mixture_path": recorded[mixture_type],
                    "source_1_path": recorded["s1"],
                    "source_2_path": recorded["s2"],
                }
                if mixture_type == "mix_both":
                    row["noise_path"] = recorded["noise"]
                rows[mixture_type].append({**row, "length": frames})
        for mixture_type, table in rows.items():
            metadata = storage / base / "metadata" / f"mixture_{split}_{mixture_type}.csv"
            metadata.parent.mkdir(parents=True, exist_ok=True)
            with open(metadata, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=list(table[0]))
                writer.writeheader()
                writer.writerows(table)
    return storage


def test_librimix_clean_and_noisy_mixtures_from_metadata(tmp_path):
    storage = write_librimix(tmp_path / "storage", tmp_path / "storage")
    clean = LibriMix(root=str(storage), cache_dir=str(tmp_path / "cache"), segment=0.5)
    assert clean.root == storage / "Libri2Mix" / "wav8k" / "min"
    assert [len(clean.train_tracks()), len(clean.valid_tracks()), len(clean.test_tracks())] == [
        2,
        2,
        2,
    ]
    track = clean.train_tracks()[1]
    assert track.name == "train-360-1_a_b" and track.non_targets == {}
    mixture, sources = read_track(track, nb_channels=1)
    assert mixture.shape == (1, 8800) and sources.shape == (2, 1, 8800)
    torch.testing.assert_close(mixture, sources.sum(dim=0), rtol=0, atol=0)

    noisy = LibriMix(
        root=str(storage / "Libri2Mix"),
        mixture_type="mix_both",
        cache_dir=str(tmp_path / "cache"),
        segment=0.5,
    )
    track = noisy.test_tracks()[0]
    assert list(track.non_targets) == ["noise"] and track.mixture.parent.name == "mix_both"
    item_mixture, item_sources = noisy.training_set()[0, 0]
    assert item_sources.shape == (2, 1, 4000)
    noise = item_mixture - item_sources.sum(dim=0)
    assert noise.abs().mean() > 0.05  # the noise is in the mixture, not in the targets


def test_librimix_moved_after_generation_still_loads(tmp_path):
    storage = write_librimix(tmp_path / "moved", tmp_path / "original-machine")
    data = LibriMix(root=str(storage), cache_dir=str(tmp_path / "cache"))
    path = data.test_tracks()[0].mixture
    assert path.is_file() and tmp_path / "moved" in path.parents


def test_librimix_errors_name_the_metadata(tmp_path):
    storage = write_librimix(tmp_path / "storage", tmp_path / "storage")
    message = one_line_error(
        "train-100", LibriMix(root=str(storage), train_split="train-100").train_tracks
    )
    assert "mixture_train-360_mix_clean.csv" in message  # lists what is there
    one_line_error("mixture_type", lambda: LibriMix(root=str(storage), mixture_type="mix_single"))
    one_line_error("LibriMix", lambda: LibriMix(root=str(tmp_path)))
    inner = storage / "Libri2Mix" / "wav8k" / "min"
    one_line_error("source_3_path", LibriMix(root=str(inner), n_src=3).test_tracks)

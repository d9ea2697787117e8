"""MUSDB18's .stem.mp4 release: decoded once with ffmpeg into the cache, then read partially."""

import os

import numpy as np
import pytest
import stempeg
import torch

from sepkit.data import MUSDBData, read_track
from sepkit.data.toy import synthesise_song

RATE = 44100
STREAMS = ["mixture", "drums", "bass", "other", "vocals"]  # MUSDB18's stream order


def write_stem_file(path, seed, seconds):
    """A MUSDB18-style .stem.mp4 (five AAC streams) of a generated song; returns its audio."""
    song = synthesise_song(np.random.default_rng(seed), round(seconds * RATE), RATE)
    stempeg.write_stems(
        str(path),
        np.stack([song[stream] for stream in STREAMS]),
        sample_rate=RATE,
        writer=stempeg.StreamsWriter(codec="aac", stem_names=STREAMS),
    )
    return song


@pytest.fixture(scope="module")
def stem_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("musdb-mp4")
    (root / "train").mkdir()
    (root / "test").mkdir()
    songs = {}
    for number in range(2):
        name = f"Band {number} - Song"
        songs[name] = write_stem_file(root / "train" / f"{name}.stem.mp4", number, 1.0)
    songs["Band 9 - Test"] = write_stem_file(root / "test" / "Band 9 - Test.stem.mp4", 9, 1.0)
    return root, songs


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return 10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2))


def test_stems_are_decoded_once_into_the_cache_and_read_partially(stem_root, tmp_path):
    root, songs = stem_root
    cache = tmp_path / "cache"
    data = MUSDBData(root=str(root), cache_dir=str(cache), segment=0.5, samples_per_track=2)
    tracks = data.train_tracks() + data.valid_tracks()
    assert sorted(track.name for track in tracks) == ["Band 0 - Song", "Band 1 - Song"]
    decoded = sorted(cache.rglob("*.wav"))
    assert len(decoded) == 2 * 5
    for track in tracks:
        assert track.num_frames == RATE  # AAC's padding to whole codec frames is trimmed
        for path in [track.mixture, *track.stems.values()]:
            assert cache in path.parents and path.suffix == ".wav"
        mixture, sources = read_track(track, nb_channels=2)
        song = songs[track.name]
        for number, target in enumerate(data.targets):
            assert snr_db(song[target].T, sources[number].numpy()) > 15  # AAC, not bit-exact
        assert snr_db(song["mixture"].T, mixture.numpy()) > 15
        part_mixture, part_sources = read_track(track, 20000, 1000, nb_channels=2)
        torch.testing.assert_close(part_mixture, mixture[:, 20000:21000], rtol=0, atol=0)
        torch.testing.assert_close(part_sources, sources[..., 20000:21000], rtol=0, atol=0)
    item_mixture, item_sources = data.training_set()[0, 1]
    assert item_mixture.shape == (2, RATE // 2) and item_sources.shape == (4, 2, RATE // 2)

    # a second construction (another run) reuses the decoded files without calling ffmpeg
    stamps = {path: path.stat().st_mtime_ns for path in decoded}
    again = MUSDBData(root=str(root), cache_dir=str(cache))
    assert len(again.train_tracks()) == 1
    assert {path: path.stat().st_mtime_ns for path in decoded} == stamps

    # an edited source file is decoded again
    source = root / "train" / "Band 0 - Song.stem.mp4"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    MUSDBData(root=str(root), cache_dir=str(cache)).train_tracks()
    redone = {path for path in decoded if path.stat().st_mtime_ns != stamps[path]}
    assert {path.parent.name for path in redone} == {"Band 0 - Song"} and len(redone) == 5


def test_two_roots_with_the_same_name_do_not_share_cached_stems(stem_root, tmp_path):
    root, _ = stem_root
    copy = tmp_path / root.name / "test" / "Band 9 - Test.stem.mp4"
    copy.parent.mkdir(parents=True)
    copy.write_bytes((root / "test" / "Band 9 - Test.stem.mp4").read_bytes())
    cache = tmp_path / "cache"
    first = MUSDBData(root=str(root), cache_dir=str(cache)).test_tracks()[0]
    second = MUSDBData(root=str(copy.parent.parent), cache_dir=str(cache)).test_tracks()[0]
    assert first.mixture.parent != second.mixture.parent
    assert first.mixture.is_file() and second.mixture.is_file()

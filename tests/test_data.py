"""Datasets on generated files: reads, training/validation sets, augmentation, checks, errors."""

import musdb
import numpy as np
import pytest
import soundfile
import torch
from torch.utils.data import DataLoader

from sepkit.data import FolderData, MUSDBData, read_track
from sepkit.data.augment import Augmentation, RandomChannelSwap, RandomGain, choose_excerpts
from sepkit.data.base import held_out_split
from sepkit.errors import SepkitError

RATE = 44100
STEMS = ["vocals", "drums", "bass", "other"]
ONE_EXCERPT = Augmentation(mix_tracks=False)  # no gains, no swaps, one excerpt per item


def write_track(folder, seconds=1.0, rate=RATE, channels=2, seed=0, extension="wav", mixture=True):
    """A track folder of noise stems (each stem its own level) and their exact float32 sum."""
    rng = np.random.default_rng(seed)
    subtype = "FLOAT" if extension == "wav" else "PCM_24"
    folder.mkdir(parents=True, exist_ok=True)
    frames = round(seconds * rate)
    total = np.zeros((frames, channels), dtype=np.float32)
    for number, stem in enumerate(STEMS):
        audio = (0.1 * (number + 1) * rng.uniform(-1, 1, (frames, channels))).astype(np.float32)
        soundfile.write(folder / f"{stem}.{extension}", audio, rate, subtype=subtype)
        total += audio
    if mixture:
        soundfile.write(folder / f"mixture.{extension}", total, rate, subtype=subtype)


def write_musdb_like(root, train_names, test_names=("Song - Test",), seconds=1.0):
    for number, name in enumerate(train_names):
        write_track(root / "train" / name, seconds=seconds, seed=number)
    for number, name in enumerate(test_names):
        write_track(root / "test" / name, seconds=seconds, seed=100 + number)
    return root


@pytest.fixture(scope="module")
def musdb_root(tmp_path_factory):
    names = [f"Band {number} - Song" for number in range(3)]
    return write_musdb_like(tmp_path_factory.mktemp("musdb"), names, seconds=1.0)


@pytest.fixture(scope="module")
def default_data(musdb_root, tmp_path_factory):
    """MUSDBData with default options on ``musdb_root`` (musdb probes each track: build once)."""
    return musdb_data(musdb_root, tmp_path_factory.mktemp("cache"))


def musdb_data(root, tmp_path, **options):
    options = {"segment": 0.25, "samples_per_track": 4, **options}
    return MUSDBData(root=str(root), is_wav=True, cache_dir=str(tmp_path / "cache"), **options)


# --- reading -------------------------------------------------------------------------------


def test_read_track_partial_reads_match_the_whole_and_pad_past_the_end(default_data):
    track = default_data.test_tracks()[0]
    mixture, sources = read_track(track, nb_channels=2)
    assert mixture.shape == (2, RATE) and sources.shape == (4, 2, RATE)
    assert mixture.dtype == sources.dtype == torch.float32
    part_mixture, part_sources = read_track(track, 1000, 500, nb_channels=2)
    torch.testing.assert_close(part_mixture, mixture[:, 1000:1500], rtol=0, atol=0)
    torch.testing.assert_close(part_sources, sources[..., 1000:1500], rtol=0, atol=0)
    tail_mixture, tail_sources = read_track(track, RATE - 100, 300, nb_channels=2)
    torch.testing.assert_close(tail_mixture[:, :100], mixture[:, -100:], rtol=0, atol=0)
    assert not tail_mixture[:, 100:].any() and not tail_sources[..., 100:].any()
    mono_mixture, _ = read_track(track, 0, 100, nb_channels=1)
    torch.testing.assert_close(mono_mixture[0], mixture[:, :100].mean(dim=0))


def test_tracks_are_hashable_values(default_data, musdb_root, tmp_path):
    again = musdb_data(musdb_root, tmp_path).test_tracks()[0]
    assert again == default_data.test_tracks()[0]
    assert {again: 1}[default_data.test_tracks()[0]] == 1


def test_test_tracks_are_musdbs_in_its_order(tmp_path):
    # listed without musdb.DB (which probes every mixture with ffprobe): the same tracks
    test_names = ["b - Second", "A - First", "c - third"]
    root = write_musdb_like(tmp_path / "musdb", ["Band - Song"], test_names, seconds=0.1)
    (root / "test" / "notes.txt").write_text("not a track")
    listed = [track.name for track in musdb_data(root, tmp_path).test_tracks()]
    database = musdb.DB(root=str(root), subsets="test", is_wav=True)
    assert listed == [track.name for track in database] == sorted(test_names)


def test_sources_follow_the_target_order_and_mixture_file_is_read(musdb_root, tmp_path):
    data = musdb_data(musdb_root, tmp_path, targets=["bass", "vocals"])
    track = data.test_tracks()[0]
    assert list(track.sources) == ["bass", "vocals"]
    assert list(track.non_targets) == ["drums", "other"]
    mixture, sources = read_track(track, nb_channels=2)
    folder = musdb_root / "test" / "Song - Test"
    bass = soundfile.read(folder / "bass.wav", dtype="float32")[0].T
    np.testing.assert_array_equal(sources[0].numpy(), bass)
    expected = soundfile.read(folder / "mixture.wav", dtype="float32")[0].T
    np.testing.assert_array_equal(mixture.numpy(), expected)


# --- training set ---------------------------------------------------------------------------


def test_training_set_length_shapes_and_mixture_is_sum_of_augmented_sources(default_data):
    training = default_data.training_set()
    assert len(training) == 4 * len(default_data.train_tracks())
    mixture, sources = training[0, 3]
    frames = round(0.25 * RATE)
    assert mixture.shape == (2, frames) and sources.shape == (4, 2, frames)
    assert mixture.dtype == sources.dtype == torch.float32
    torch.testing.assert_close(mixture, sources.sum(dim=0), rtol=0, atol=0)


def test_training_items_are_determined_by_seed_epoch_and_index(default_data, musdb_root, tmp_path):
    first = default_data.training_set()
    again = musdb_data(musdb_root, tmp_path).training_set()  # a new process would build this
    for key in [(0, 0), (2, 6), (5, 7)]:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)
    torch.testing.assert_close(first[3], first[0, 3], rtol=0, atol=0)  # int index = epoch 0
    assert not torch.equal(first[0, 3][0], first[1, 3][0])  # new segments every epoch
    assert not torch.equal(first[0, 3][0], first[0, 4][0])
    other_seed = musdb_data(musdb_root, tmp_path, seed=7).training_set()
    assert not torch.equal(first[0, 3][0], other_seed[0, 3][0])


def test_training_items_are_the_same_in_dataloader_workers(default_data):
    training = default_data.training_set()
    keys = [(4, index) for index in range(4)]
    loader = DataLoader(training, batch_size=2, sampler=keys, num_workers=1)
    batches = list(loader)
    assert batches[0][0].shape == (2, 2, round(0.25 * RATE))
    assert batches[0][1].shape == (2, 4, 2, round(0.25 * RATE))
    for number, key in enumerate(keys):
        mixture, sources = training[key]
        torch.testing.assert_close(batches[number // 2][0][number % 2], mixture, rtol=0, atol=0)
        torch.testing.assert_close(batches[number // 2][1][number % 2], sources, rtol=0, atol=0)


def find_offset(excerpt: np.ndarray, whole: np.ndarray) -> int:
    """Where ``excerpt`` (channels, time) starts in ``whole`` (channels, time)."""
    for start in np.flatnonzero(whole[0] == excerpt[0, 0]):
        if np.array_equal(whole[:, start : start + excerpt.shape[1]], excerpt):
            return int(start)
    raise AssertionError("excerpt not found")


def test_without_track_mixing_an_item_is_one_excerpt_of_its_track(musdb_root, tmp_path):
    data = musdb_data(musdb_root, tmp_path, augmentation=ONE_EXCERPT)
    training = data.training_set()
    for index in [0, 5, 7]:
        mixture, sources = training[3, index]
        track = data.train_tracks()[index // 4]
        whole_mixture, whole_sources = read_track(track, nb_channels=2)
        offsets = {find_offset(sources[k].numpy(), whole_sources[k].numpy()) for k in range(4)}
        assert len(offsets) == 1
        start = offsets.pop()
        torch.testing.assert_close(
            mixture, whole_mixture[:, start : start + mixture.shape[1]], rtol=0, atol=1e-6
        )


def test_with_track_mixing_sources_come_from_different_tracks_and_offsets(musdb_root, tmp_path):
    data = musdb_data(musdb_root, tmp_path, augmentation=Augmentation(mix_tracks=True))
    wholes = [read_track(track, nb_channels=2)[1] for track in data.train_tracks()]
    origins = set()
    for index in range(8):
        _, sources = data.training_set()[0, index]
        for stem in range(4):
            for number, whole in enumerate(wholes):
                try:
                    origins.add((stem, number, find_offset(sources[stem].numpy(), whole[stem])))
                except AssertionError:
                    continue
    assert len({number for _, number, _ in origins}) > 1
    assert len(origins) == 32  # every source found, each at its own (track, offset)
    assert len(wholes) == 2


def test_gain_range_is_applied_to_every_source(musdb_root, tmp_path):
    plain = musdb_data(musdb_root, tmp_path, augmentation=ONE_EXCERPT)
    halved = musdb_data(
        musdb_root,
        tmp_path,
        augmentation={"gain_min": 0.5, "gain_max": 0.5},  # as a config gives it
    )
    plain_sources = plain.training_set()[1, 2][1]
    halved_mixture, halved_sources = halved.training_set()[1, 2]
    torch.testing.assert_close(halved_sources, 0.5 * plain_sources)
    torch.testing.assert_close(halved_mixture, halved_sources.sum(dim=0))


# --- augmentation pieces --------------------------------------------------------------------


def test_random_gain_stays_in_bounds_and_differs_per_source():
    sources = torch.ones(4, 2, 10)
    rng = np.random.default_rng(0)
    gains = []
    for _ in range(200):
        gained = RandomGain(0.25, 1.25)(sources, rng)
        assert torch.equal(gained, gained[:, :1, :1].expand_as(gained))  # one gain per source
        gains.extend(gained[:, 0, 0].tolist())
    assert 0.25 <= min(gains) < 0.3 and 1.2 < max(gains) <= 1.25
    assert len(set(gains[:4])) == 4
    with pytest.raises(SepkitError, match="gain_min"):
        RandomGain(2.0, 1.0)


def test_channel_swap_swaps_each_source_with_its_probability():
    sources = torch.stack([torch.zeros(5, 8), torch.ones(5, 8)], dim=1)  # left 0, right 1
    always = RandomChannelSwap(1.0)(sources, np.random.default_rng(0))
    assert torch.equal(always, sources.flip(1))
    never = RandomChannelSwap(0.0)(sources, np.random.default_rng(0))
    assert torch.equal(never, sources)
    rng = np.random.default_rng(1)
    swapped = [RandomChannelSwap(0.5)(sources, rng)[:, 0, 0] for _ in range(400)]
    fraction = torch.stack(swapped).mean().item()
    assert 0.4 < fraction < 0.6
    mono = torch.randn(3, 1, 8)
    assert torch.equal(RandomChannelSwap(1.0)(mono, np.random.default_rng(0)), mono)
    with pytest.raises(SepkitError, match="channel_swap_probability"):
        RandomChannelSwap(1.5)


def test_choose_excerpts_starts_stay_inside_the_tracks():
    rng = np.random.default_rng(0)
    lengths = [1000, 50, 3000]
    for _ in range(100):
        for track, start in choose_excerpts(rng, lengths, 0, 4, 100, mix_tracks=True):
            assert 0 <= start <= max(lengths[track] - 100, 0)
    same = choose_excerpts(rng, lengths, 2, 4, 100, mix_tracks=False)
    assert len(set(same)) == 1 and same[0][0] == 2


# --- validation set and splits --------------------------------------------------------------


def test_validation_set_whole_tracks_or_fixed_segments(default_data, musdb_root, tmp_path):
    whole = default_data.validation_set()
    track = whole.tracks[0]
    mixture, sources = whole[0]
    assert len(whole) == 1 and mixture.shape == (2, RATE) and sources.shape == (4, 2, RATE)
    segmented = musdb_data(musdb_root, tmp_path, valid_segment=0.3).validation_set()
    assert len(segmented) == 4  # ceil(1.0 / 0.3)
    last_mixture, last_sources = segmented[3]
    frames = round(0.3 * RATE)
    torch.testing.assert_close(last_mixture, mixture[:, -frames:], rtol=0, atol=0)
    torch.testing.assert_close(segmented[0][1], sources[..., :frames], rtol=0, atol=0)
    assert segmented.tracks == [track]


def test_held_out_validation_is_seeded_nonempty_and_disjoint(default_data, musdb_root, tmp_path):
    train = {track.name for track in default_data.train_tracks()}
    valid = {track.name for track in default_data.valid_tracks()}
    assert len(valid) == 1 and len(train) == 2 and not train & valid
    again = musdb_data(musdb_root, tmp_path)
    assert [track.name for track in again.valid_tracks()] == sorted(valid)
    tracks = default_data.train_tracks() + default_data.valid_tracks()
    choices = {held_out_split(tracks, 0.2, seed, "x")[1][0].name for seed in range(10)}
    assert len(choices) > 1
    training, two_thirds = held_out_split(tracks, 0.67, 0, "x")
    assert len(two_thirds) == 2 and len(training) == 1


def test_musdb_validation_split_used_when_the_root_has_musdb18_tracks(tmp_path):
    names = ["Actions - One Minute Smile", "Band A - Song", "Band B - Song"]
    root = write_musdb_like(tmp_path / "musdb", names)
    data = musdb_data(root, tmp_path)
    assert [track.name for track in data.valid_tracks()] == ["Actions - One Minute Smile"]
    assert [track.name for track in data.train_tracks()] == names[1:]


# --- checks and conversions -----------------------------------------------------------------


def one_line_error(match, call):
    with pytest.raises(SepkitError, match=match) as caught:
        call()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_missing_root_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSDB_PATH", raising=False)
    message = one_line_error("dataset.root", lambda: MUSDBData())
    assert "MUSDB_PATH" in message
    missing = tmp_path / "nowhere"
    message = one_line_error(str(missing), lambda: MUSDBData(root=str(missing)))
    assert "dataset.root" in message
    monkeypatch.setenv("MUSDB_PATH", str(missing))
    one_line_error(str(missing), lambda: MUSDBData())


def test_musdb_path_environment_variable_is_used(musdb_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSDB_PATH", str(musdb_root))
    data = MUSDBData(is_wav=True, cache_dir=str(tmp_path))
    assert data.root == musdb_root and len(data.test_tracks()) == 1


def test_wrong_layout_option_is_named(musdb_root, tmp_path):
    data = musdb_data(musdb_root, tmp_path)
    data.is_wav = False
    one_line_error("dataset.is_wav=true", data.train_tracks)


def test_missing_stem_names_the_track_folder_and_stem(tmp_path):
    root = write_musdb_like(tmp_path / "musdb", ["A - One", "B - Two"])
    (root / "train" / "B - Two" / "drums.wav").unlink()
    message = one_line_error("drums.wav", musdb_data(root, tmp_path).train_tracks)
    assert str(root / "train" / "B - Two") in message


def test_unequal_stem_lengths_are_refused_with_the_lengths(tmp_path):
    root = write_musdb_like(tmp_path / "musdb", ["A - One", "B - Two"])
    bass = root / "train" / "A - One" / "bass.wav"
    soundfile.write(bass, soundfile.read(bass)[0][:40000], RATE, subtype="FLOAT")
    message = one_line_error("unequal lengths", musdb_data(root, tmp_path).train_tracks)
    assert "bass.wav 40000" in message and f"vocals.wav {RATE}" in message
    assert str(root / "train" / "A - One") in message


def test_mono_track_is_served_as_duplicated_channels(tmp_path):
    root = write_musdb_like(tmp_path / "musdb", ["B - Two"])
    write_track(root / "train" / "A - Mono", channels=1, seed=5)
    data = musdb_data(root, tmp_path)
    mono = next(
        track for track in data.train_tracks() + data.valid_tracks() if "Mono" in track.name
    )
    mixture, sources = read_track(mono, nb_channels=2)
    assert mixture.shape == (2, RATE) and sources.shape == (4, 2, RATE)
    torch.testing.assert_close(sources[:, 0], sources[:, 1], rtol=0, atol=0)
    original = soundfile.read(root / "train" / "A - Mono" / "vocals.wav", dtype="float32")[0]
    np.testing.assert_array_equal(sources[0, 0].numpy(), original)


def test_track_at_another_rate_is_resampled_once_into_the_cache(tmp_path):
    root = write_musdb_like(tmp_path / "musdb", ["B - Two"])
    folder = root / "train" / "A - Slow"
    folder.mkdir()
    time = np.arange(22050) / 22050
    for stem in ["mixture", *STEMS]:
        tone = 0.2 * np.sin(2 * np.pi * 440 * time)
        soundfile.write(folder / f"{stem}.wav", np.stack([tone, tone], 1), 22050, "FLOAT")
    cache = tmp_path / "cache"
    data = musdb_data(root, tmp_path)
    slow = next(
        track for track in data.train_tracks() + data.valid_tracks() if "Slow" in track.name
    )
    assert slow.sample_rate == RATE and slow.num_frames == RATE
    assert all(cache in path.parents for path in slow.stems.values())
    _, sources = read_track(slow, nb_channels=2)
    expected = 0.2 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)
    np.testing.assert_allclose(sources[0, 0, 1000:-1000].numpy(), expected[1000:-1000], atol=2e-3)
    stamps = {path: path.stat().st_mtime_ns for path in slow.stems.values()}
    again = musdb_data(root, tmp_path)
    again_slow = next(t for t in again.train_tracks() + again.valid_tracks() if "Slow" in t.name)
    assert {path: path.stat().st_mtime_ns for path in again_slow.stems.values()} == stamps


def test_stems_at_different_rates_or_odd_channel_counts_are_refused(tmp_path):
    root = write_musdb_like(tmp_path / "musdb", ["A - One", "B - Two"])
    other = root / "train" / "A - One" / "other.wav"
    soundfile.write(other, np.zeros((22050, 2)), 22050)
    one_line_error("different sample rates", musdb_data(root, tmp_path).train_tracks)
    soundfile.write(other, np.zeros((RATE, 3)), RATE)
    one_line_error("3 channels", musdb_data(root, tmp_path).train_tracks)


def test_bad_options_are_refused(musdb_root, tmp_path):
    one_line_error("karaoke", lambda: musdb_data(musdb_root, tmp_path, targets=["karaoke"]))
    one_line_error("segment", lambda: musdb_data(musdb_root, tmp_path, segment=0.0))
    one_line_error("valid_fraction", lambda: musdb_data(musdb_root, tmp_path, valid_fraction=1))
    bad_gain = {"gain_min": -1.0, "gain_max": 1.25}
    one_line_error("gain_min", lambda: musdb_data(musdb_root, tmp_path, augmentation=bad_gain))
    one_line_error(
        "unknown keys", lambda: musdb_data(musdb_root, tmp_path, augmentation={"gain": 1})
    )


def test_preview_download_failure_is_one_line(tmp_path, monkeypatch):
    # musdb's real download, through a proxy that refuses connections: offline on any machine
    for variable in ["https_proxy", "HTTPS_PROXY"]:
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    message = one_line_error(
        "7-second preview", lambda: MUSDBData(root=str(tmp_path / "p"), download=True)
    )
    assert "dataset.root" in message


# --- folder dataset -------------------------------------------------------------------------


def test_folder_dataset_with_flac_stems_no_mixture_and_a_target_subset(tmp_path):
    for split, count in [("train", 2), ("valid", 1), ("test", 1)]:
        for number in range(count):
            write_track(
                tmp_path / "set" / split / f"{split}{number}",
                seed=number,
                extension="flac",
                mixture=False,
            )
    data = FolderData(
        root=str(tmp_path / "set"),
        targets=["vocals"],
        segment=0.25,
        samples_per_track=2,
        cache_dir=str(tmp_path / "cache"),
        augmentation=ONE_EXCERPT,
    )
    assert [track.name for track in data.valid_tracks()] == ["valid0"]
    track = data.train_tracks()[0]
    assert track.mixture is None and list(track.non_targets) == ["bass", "drums", "other"]
    mixture, sources = read_track(track, nb_channels=2)
    stems = {
        stem: soundfile.read(tmp_path / "set/train/train0" / f"{stem}.flac", dtype="float32")[0].T
        for stem in STEMS
    }
    assert sources.shape == (1, 2, RATE)
    np.testing.assert_allclose(mixture.numpy(), sum(stems.values()), atol=1e-6)
    item_mixture, item_sources = data.training_set()[0, 1]
    assert item_sources.shape == (1, 2, round(0.25 * RATE))
    assert not torch.allclose(item_mixture, item_sources[0])  # the other stems are mixed in
    start = find_offset(item_sources[0].numpy(), sources[0].numpy())
    torch.testing.assert_close(
        item_mixture, mixture[:, start : start + item_mixture.shape[1]], rtol=0, atol=1e-6
    )


def test_folder_dataset_without_valid_folder_holds_out_and_checks_stems(tmp_path):
    for number in range(3):
        write_track(tmp_path / "set" / "train" / f"t{number}", seed=number)
    data = FolderData(root=str(tmp_path / "set"), cache_dir=str(tmp_path / "cache"))
    assert len(data.train_tracks()) == 2 and len(data.valid_tracks()) == 1
    one_line_error("test", data.test_tracks)
    kept = tmp_path / "set/train" / data.train_tracks()[1].name
    (kept / "extra.wav").write_bytes((kept / "bass.wav").read_bytes())
    changed = FolderData(root=str(tmp_path / "set"), cache_dir=str(tmp_path / "cache"))
    one_line_error("same stems", lambda: changed.training_set() and changed.validation_set())
    (tmp_path / "set/train/t2/vocals.wav").unlink()
    missing = FolderData(root=str(tmp_path / "set"), cache_dir=str(tmp_path / "cache"))
    one_line_error("missing vocals.wav", missing.train_tracks)
    one_line_error("dataset.root", lambda: FolderData())

"""How fast the datasets serve data: generation, training items, validation tracks, indexing;
and MUSDB18's ``.stem.mp4`` files against musdb's own per-segment reading.

Run by hand (uses a temporary cache; prints the figures, asserts nothing):

    PYTHONPATH=. python benchmarks/data_loading.py [--mp4-tracks 4] [--mp4-seconds 60]
        [--items 32] [--only toy|mp4]

Reads are partial soundfile reads of WAVs, so a training item should cost milliseconds,
never the seconds of an ffmpeg decode per segment.

The ``.stem.mp4`` comparison generates songs in MUSDB18's release layout (five AAC streams
per file, ``<root>/train/<track>.stem.mp4``) and draws the same kind of training item both
ways: four 6-second sources, each from a random track at a random offset, each with a
random gain in [0.25, 1.25] and a left/right swap with probability 0.5, summed into the
mixture (Open-Unmix's training items). sepkit: ``MUSDBData(is_wav=False)``, which decodes
every file once into the cache (timed separately) and then reads WAV excerpts. musdb: what
open-unmix's ``MUSDBDataset`` does per source, ``track.chunk_duration = 6``,
``track.chunk_start = <random>``, ``track.sources[name].audio`` (an ffmpeg decode per
source per item). Both run in this process on one thread, alternating in rounds.
"""

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sepkit.data import ToyMUSDB, ToySpeech, read_track

SEGMENT_SECONDS = 6.0
SOURCES = ["vocals", "drums", "bass", "other"]


def timed(function, repeats: int = 1) -> float:
    """Mean seconds per call of ``function`` over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def write_stem_mp4_set(root: Path, tracks: int, seconds: float) -> None:
    """``tracks`` generated songs as MUSDB18 ``.stem.mp4`` files in ``root/train``."""
    import stempeg

    from sepkit.data.toy import synthesise_song

    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    streams = ["mixture", "drums", "bass", "other", "vocals"]  # MUSDB18's stream order
    for number in range(tracks):
        song = synthesise_song(np.random.default_rng(number), round(seconds * 44100), 44100)
        stempeg.write_stems(
            str(root / "train" / f"Generated {number:02d} - Song.stem.mp4"),
            np.stack([song[stream] for stream in streams]),
            sample_rate=44100,
            writer=stempeg.StreamsWriter(codec="aac", stem_names=streams),
        )


def musdb_item(database, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """One training item read the way open-unmix's MUSDBDataset reads it with musdb."""
    stems = []
    for source in SOURCES:
        track = rng.choice(database.tracks)
        track.chunk_duration = SEGMENT_SECONDS
        track.chunk_start = rng.uniform(0, track.duration - SEGMENT_SECONDS)
        audio = torch.as_tensor(track.sources[source].audio.T, dtype=torch.float32)
        audio = audio * (0.25 + rng.random())  # gain in [0.25, 1.25]
        if rng.random() < 0.5:
            audio = torch.flip(audio, [0])
        stems.append(audio)
    stems = torch.stack(stems)
    return stems.sum(0), stems


def compare_stem_mp4(tracks: int, seconds: float, items: int, rounds: int = 3) -> None:
    import musdb

    from sepkit.data import MUSDBData

    folder = Path(tempfile.mkdtemp(prefix="sepkit-benchmark-mp4-"))
    started = time.perf_counter()
    write_stem_mp4_set(folder / "musdb", tracks, seconds)
    print(
        f"MUSDB18 .stem.mp4 layout: {tracks} generated tracks of {seconds:.0f} s "
        f"(5 AAC streams each), encoded in {time.perf_counter() - started:.1f} s"
    )
    data = MUSDBData(
        root=str(folder / "musdb"),
        is_wav=False,
        cache_dir=str(folder / "cache"),
        segment=SEGMENT_SECONDS,
        samples_per_track=64,
    )
    decode = timed(data.train_tracks)
    training = data.training_set()
    database = musdb.DB(root=str(folder / "musdb"), subsets="train")
    rng = random.Random(0)
    shapes = [tuple(training[0, 0][1].shape), tuple(musdb_item(database, rng)[1].shape)]
    print(
        f"  sources of one item (sources, channels, samples): sepkit {shapes[0]}, musdb {shapes[1]}"
    )
    sepkit_seconds, musdb_seconds = [], []
    for round_number in range(rounds):
        keys = [(round_number + 1, index) for index in range(items)]
        sepkit_seconds.append(timed(lambda keys=keys: [training[key] for key in keys]) / items)
        musdb_seconds.append(
            timed(lambda: [musdb_item(database, rng) for _ in range(items)]) / items
        )
    ours, theirs = statistics.median(sepkit_seconds), statistics.median(musdb_seconds)
    print(f"  sepkit: decode every file once into the cache: {decode:.1f} s (one time)")
    print(
        f"  training item (4 x 6 s sources, random tracks and offsets, gain, swap), median of "
        f"{rounds} rounds of {items}:"
    )
    print(f"    sepkit MUSDBData (cached WAV excerpts): {1000 * ours:.1f} ms")
    print(f"    musdb chunk_start/chunk_duration + .audio: {1000 * theirs:.1f} ms")
    print(f"    ratio musdb / sepkit: {theirs / ours:.1f}x")
    if theirs > ours:
        print(f"    the one-time decode pays off after {decode / (theirs - ours):.0f} items")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mp4-tracks", type=int, default=4)
    parser.add_argument("--mp4-seconds", type=float, default=60.0)
    parser.add_argument("--items", type=int, default=32, help="items per round (mp4)")
    parser.add_argument("--only", choices=["toy", "mp4"], default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    if arguments.only != "mp4":
        toy_sets()
    if arguments.only != "toy":
        compare_stem_mp4(arguments.mp4_tracks, arguments.mp4_seconds, arguments.items)


def toy_sets() -> None:
    cache = tempfile.mkdtemp(prefix="sepkit-benchmark-")

    seconds = timed(lambda: ToyMUSDB(cache_dir=cache))
    print(f"toy MUSDB18 set (8 x 12 s + 3 x 10 s, 5 stereo stems): generated in {seconds:.1f} s")
    music = ToyMUSDB(cache_dir=cache)
    seconds = timed(music.train_tracks)
    print(f"  tracks found and checked (musdb.DB + headers): {seconds:.2f} s")
    training = music.training_set()
    keys = [(1, index) for index in range(64)]
    seconds = timed(lambda: [training[key] for key in keys]) / len(keys)
    print(f"  training item (6 s, 4 stems from random tracks, gain, swap): {1000 * seconds:.1f} ms")
    print(f"  batch of 16 items in one worker: {16 * seconds:.2f} s")
    track = music.valid_tracks()[0]
    seconds = timed(lambda: read_track(track, nb_channels=2), repeats=5)
    print(f"  whole validation track ({track.duration:.0f} s): {1000 * seconds:.1f} ms")

    seconds = timed(lambda: ToySpeech(cache_dir=cache))
    print(
        f"toy speech set (64 + 16 + 16 two-speaker mixtures, 8 kHz): generated in {seconds:.1f} s"
    )
    speech = ToySpeech(cache_dir=cache)
    seconds = timed(speech.train_tracks)
    per_utterance = seconds / len(speech.train_tracks())
    print(
        f"  utterances checked: {1000 * per_utterance:.2f} ms each "
        f"(wsj0-2mix tr, 20,000 mixtures: about {20000 * per_utterance:.0f} s)"
    )
    training = speech.training_set()
    seconds = timed(lambda: [training[1, index] for index in range(len(training))]) / len(training)
    print(f"  training item (4 s at 8 kHz, 2 speakers): {1000 * seconds:.2f} ms")


if __name__ == "__main__":
    main()

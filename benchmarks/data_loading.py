"""How fast the datasets serve data: generation, training items, validation tracks, indexing.

Run by hand: ``PYTHONPATH=. python benchmarks/data_loading.py`` (uses a temporary cache).
Prints the figures; nothing is asserted. Reads are partial soundfile reads of WAVs, so a
training item should cost milliseconds, never the seconds of an ffmpeg decode per segment.
"""

import tempfile
import time

import torch

from sepkit.data import ToyMUSDB, ToySpeech, read_track


def timed(function, repeats: int = 1) -> float:
    """Mean seconds per call of ``function`` over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    torch.set_num_threads(1)  # as in a DataLoader worker
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

"""A small generated MUSDB18-layout set, so everything runs without downloading MUSDB18.

``generate_toy_musdb`` synthesises songs whose four stems sound like their namesakes and are
easy to tell apart, so a small model learns to separate them in minutes on a CPU:

- vocals: a sung melody, fundamental 200-1000 Hz, with vibrato and vowel formants;
- drums: kick (pitch-swept sine), snare (band-passed noise and a tone), hi-hats (high-passed
  noise), on a 16th-note grid;
- bass: notes of the chord roots and fifths below 150 Hz with a few harmonics;
- other: sustained chords (detuned saw-like pads) in the mid-high range.

Each song has its own tempo, key, chord progression, levels and panning; each stem is active
most of the time, with some silent bars. Files are 32-bit float WAVs, 44.1 kHz stereo, in
MUSDB18's WAV layout; the mixture equals the sum of the stems exactly in float32, in any
summation order (stems are quantised to a 2**-20 grid and kept below 1, so every partial sum
is exactly representable). The same parameters give bit-identical files.
"""

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sepkit.data.cache import cache_root, publish_folder, write_float_wav
from sepkit.data.musdb import MUSDB_STEMS, MUSDBData
from sepkit.errors import SepkitError

TOY_MARKER = "sepkit_toy.json"
_TOY_VERSION = 1  # bump when the synthesis changes, so cached sets are regenerated
_TABLE_SIZE = 4096
_SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10]}
# Vowel formants (F1, F2, F3) in Hz, typical adult values (Peterson & Barney 1952).
_VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
           (570, 840, 2410)]  # fmt: skip


def generate_toy_musdb(
    root: str | Path,
    seed: int = 0,
    nb_train_tracks: int = 8,
    nb_test_tracks: int = 3,
    train_duration: float = 12.0,
    test_duration: float = 10.0,
    sample_rate: int = 44100,
) -> Path:
    """Write the toy set into ``root`` (if not already there) and return ``root``.

    ``root`` receives ``train/<track>/`` and ``test/<track>/`` folders with mixture, drums,
    bass, other and vocals .wav, and a marker file recording the parameters. The set is built
    in a temporary sibling folder and renamed into place, so ``root`` is either complete or
    absent. A ``root`` already holding the same parameters is reused; one holding anything
    else is refused.
    """
    parameters = {
        "generator": "sepkit.data.toy.generate_toy_musdb",
        "version": _TOY_VERSION,
        "seed": int(seed),
        "nb_train_tracks": int(nb_train_tracks),
        "nb_test_tracks": int(nb_test_tracks),
        "train_duration": float(train_duration),
        "test_duration": float(test_duration),
        "sample_rate": int(sample_rate),
    }
    if nb_train_tracks < 1 or nb_test_tracks < 1 or min(train_duration, test_duration) <= 0:
        raise SepkitError(f"toy set parameters {parameters} need at least one track of each split")
    return build_once(Path(root).expanduser(), parameters, _write_toy_musdb)


def build_once(root: Path, parameters: dict, write) -> Path:
    """Run ``write(folder, parameters)`` into a temporary sibling and rename it to ``root``."""
    marker = root / TOY_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == parameters:
        return root
    if root.exists() and any(root.iterdir()):
        raise SepkitError(
            f"{root} already holds other files or a toy set made with other parameters: "
            "delete it or choose another folder"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.", suffix=".tmp"))
    try:
        write(built, parameters)
        (built / TOY_MARKER).write_text(json.dumps(parameters, indent=1, sort_keys=True))
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    publish_folder(built, root)
    if not (marker.is_file() and json.loads(marker.read_text()) == parameters):
        raise SepkitError(f"{root} was created by another process with other parameters")
    return root


def generated_set(
    root: str | None, cache_dir: str | None, name: str, version: int, generate, arguments: dict
) -> str:
    """The folder of a generated set, written on first use: ``root``, or with None the cache
    folder ``<name>-<hash of version and arguments>``, so every parameter set has its own.
    ``generate(folder, **arguments)`` writes it (once: it reuses a folder it wrote)."""
    if root is None:
        text = json.dumps({"version": version, **arguments}, sort_keys=True)
        root = str(cache_root(cache_dir) / f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:12]}")
    generate(root, **arguments)
    return root


def _write_toy_musdb(folder: Path, parameters: dict) -> None:
    sample_rate = parameters["sample_rate"]
    for subset, code, count, duration in [
        ("train", 0, parameters["nb_train_tracks"], parameters["train_duration"]),
        ("test", 1, parameters["nb_test_tracks"], parameters["test_duration"]),
    ]:
        for index in range(count):
            rng = np.random.default_rng([parameters["seed"], code, index])
            stems = synthesise_song(rng, round(duration * sample_rate), sample_rate)
            track = folder / subset / f"Sepkit Toy - {subset.title()} {index:02d}"
            track.mkdir(parents=True)
            for name, audio in stems.items():
                write_float_wav(track / f"{name}.wav", audio, sample_rate)


# ---------------------------------------------------------------------------------------------
# Synthesis. Every function draws only from the generator it is given, in a fixed order.


def synthesise_song(
    rng: np.random.Generator, num_frames: int, sample_rate: int
) -> dict[str, np.ndarray]:
    """One song: {"mixture", "drums", "bass", "other", "vocals"} -> float32 (frames, 2).

    The mixture is exactly the float32 sum of the four stems.
    """
    song = _song_plan(rng, num_frames, sample_rate)
    stems = {
        "vocals": _pan(_vocals(rng, song), rng.uniform(-0.2, 0.2)),
        "drums": _drums(rng, song),  # stereo already: hats are panned apart from kick and snare
        "bass": _pan(_bass(rng, song), rng.uniform(-0.15, 0.15)),
        "other": _pan(_pads(rng, song), rng.uniform(-0.6, 0.6)),
    }
    for name in MUSDB_STEMS:
        level_db = rng.uniform(-6.0, 0.0)
        loudness = np.sqrt(np.mean(stems[name] ** 2)) + 1e-12
        stems[name] = stems[name] * (0.1 * 10 ** (level_db / 20) / loudness)
    quantised, mixture = exact_mixture(
        [stems[name] for name in ["drums", "bass", "other", "vocals"]]
    )
    return {"mixture": mixture, **dict(zip(["drums", "bass", "other", "vocals"], quantised))}


def exact_mixture(
    sources: list[np.ndarray], peak: float = 0.9
) -> tuple[list[np.ndarray], np.ndarray]:
    """Scale ``sources`` together to a ``peak`` and make their float32 sum exact.

    Each source is rounded to a multiple of 2**-20 and stays below 1, so every partial sum of
    up to 16 sources is exactly representable in float32 (24-bit significand): the mixture
    equals the sum of the sources in any order. Returns (float32 sources, float32 mixture).
    """
    total = sum(sources)
    scale = peak / max([np.abs(total).max()] + [np.abs(source).max() for source in sources])
    grid = 2.0**20
    quantised = [(np.round(source * scale * grid) / grid).astype(np.float32) for source in sources]
    mixture = np.sum(np.stack(quantised).astype(np.float64), axis=0).astype(np.float32)
    return quantised, mixture


def _song_plan(rng: np.random.Generator, num_frames: int, sample_rate: int) -> dict:
    beat = 60.0 / rng.uniform(88, 136)
    bar = 4 * beat
    nb_bars = int(np.ceil(num_frames / sample_rate / bar))
    scale = _SCALES["major" if rng.random() < 0.5 else "minor"]
    key = int(rng.integers(0, 12))
    progression = [0] + [int(degree) for degree in rng.choice([1, 3, 4, 5], size=3)]
    chords = [progression[bar_index % 4] for bar_index in range(nb_bars)]
    return {
        "sample_rate": sample_rate,
        "num_frames": num_frames,
        "beat": beat,
        "bar": bar,
        "nb_bars": nb_bars,
        "scale": scale,
        "key": key,
        "chords": chords,
    }


def _active_bars(rng: np.random.Generator, nb_bars: int, silent_probability: float) -> np.ndarray:
    """Which bars a stem plays in: most, with some silent ones, never fewer than half."""
    active = rng.random(nb_bars) >= silent_probability
    while active.sum() < (nb_bars + 1) // 2:
        active[rng.integers(0, nb_bars)] = True
    return active


def _scale_note(song: dict, degree: int, octave_midi: int) -> int:
    """MIDI note of scale ``degree`` (any integer) above the key's note in ``octave_midi``."""
    octave, step = divmod(degree, 7)
    return octave_midi + song["key"] + song["scale"][step] + 12 * octave


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def wavetable(amplitudes: np.ndarray) -> np.ndarray:
    """One cycle of the harmonic series with ``amplitudes`` (harmonic 1 first)."""
    cycle = np.arange(_TABLE_SIZE) / _TABLE_SIZE
    harmonics = np.arange(1, len(amplitudes) + 1)
    # an explicit sum, not a matrix product: BLAS may split the sum differently from run to
    # run (threads), which would break bit-identical output
    return np.sum(amplitudes[:, None] * np.sin(2 * np.pi * np.outer(harmonics, cycle)), axis=0)


def oscillate(table: np.ndarray, frequency: np.ndarray, sample_rate: int, phase: float = 0.0):
    """Play ``table`` at a (time-varying) ``frequency`` in Hz, by linear table lookup."""
    cycles = phase + np.cumsum(frequency) / sample_rate
    position = (cycles % 1.0) * _TABLE_SIZE
    lower = position.astype(np.int64)
    fraction = position - lower
    return table[lower] * (1 - fraction) + table[(lower + 1) % _TABLE_SIZE] * fraction


def raised_cosine_envelope(length: int, attack: int, release: int) -> np.ndarray:
    """Raised-cosine attack and release around a flat middle, ``length`` samples."""
    envelope = np.ones(length)
    attack, release = min(attack, length // 2), min(release, length // 2)
    if attack:
        envelope[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    if release:
        envelope[length - release :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / release)
    return envelope


def add_at(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    """Add ``sound`` into ``out`` from ``start``, cut at the end of ``out``."""
    end = min(len(out), start + len(sound))
    if start < end:
        out[start:end] += sound[: end - start]


def _vocals(rng: np.random.Generator, song: dict) -> np.ndarray:
    sample_rate, beat = song["sample_rate"], song["beat"]
    out = np.zeros(song["num_frames"])
    register = int(rng.integers(57, 67))  # lowest sung note: 220-370 Hz
    vibrato_rate, vibrato_depth = rng.uniform(4.8, 6.2), rng.uniform(0.25, 0.6)  # Hz, semitones
    active = _active_bars(rng, song["nb_bars"], 0.2)
    degree = int(rng.integers(0, 5))
    for bar_index in np.flatnonzero(active):
        time = bar_index * song["bar"]
        bar_end = time + song["bar"]
        while time < bar_end - 0.25 * beat:
            length = beat * rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])
            # a breath between phrases, never on the bar's first note: no active bar is silent
            if time > bar_index * song["bar"] and rng.random() < 0.2:
                time += length
                continue
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, 12))
            midi = _scale_note(song, degree, register - song["key"])
            formants = _VOWELS[rng.integers(len(_VOWELS))]
            frames = int(length * sample_rate)
            t = np.arange(frames) / sample_rate
            onset = np.clip((t - 0.12) / 0.2, 0, 1)  # vibrato sets in after the attack
            vibrato = vibrato_depth * onset * np.sin(2 * np.pi * vibrato_rate * t)
            frequency = _hz(midi) * 2 ** (vibrato / 12)
            harmonics = np.arange(1, int(9000 / _hz(midi)) + 1) * _hz(midi)
            gain = sum(1 / (1 + ((harmonics - f) / (60 + 0.06 * f)) ** 2) for f in formants)
            table = wavetable((0.05 + gain) / np.arange(1, len(harmonics) + 1))
            note = oscillate(table, frequency, sample_rate)
            note *= raised_cosine_envelope(frames, int(0.04 * sample_rate), int(0.08 * sample_rate))
            add_at(out, int(time * sample_rate), note / np.abs(table).max())
            time += length
    return out


def band_noise(
    rng: np.random.Generator, frames: int, low: float, high: float, sample_rate: int
) -> np.ndarray:
    """White noise limited to [low, high] Hz (by zeroing FFT bins), unit peak."""
    size = 1 << max(int(frames - 1).bit_length(), 1)  # a power of two: FFTs of primes are slow
    spectrum = np.fft.rfft(rng.standard_normal(size))
    frequencies = np.fft.rfftfreq(size, 1 / sample_rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0
    noise = np.fft.irfft(spectrum, size)[:frames]
    return noise / (np.abs(noise).max() + 1e-12)


def _drums(rng: np.random.Generator, song: dict) -> np.ndarray:
    sample_rate = song["sample_rate"]
    t_kick = np.arange(int(0.35 * sample_rate)) / sample_rate
    kick_frequency = 45 + 110 * np.exp(-t_kick / 0.04)
    kick = np.sin(2 * np.pi * np.cumsum(kick_frequency) / sample_rate) * np.exp(-t_kick / 0.12)
    t_snare = np.arange(int(0.25 * sample_rate)) / sample_rate
    snare = 2.5 * band_noise(rng, len(t_snare), 1000, 6000, sample_rate) * np.exp(-t_snare / 0.07)
    snare += 0.5 * np.sin(2 * np.pi * 190 * t_snare) * np.exp(-t_snare / 0.05)
    t_hat = np.arange(int(0.08 * sample_rate)) / sample_rate
    hat = 1.2 * band_noise(rng, len(t_hat), 7000, 16000, sample_rate) * np.exp(-t_hat / 0.02)

    extra_kicks = [[], [10], [6, 10], [14], [3, 10]]
    kick_steps = [0, 8] + extra_kicks[rng.integers(len(extra_kicks))]
    snare_steps = [4, 12]
    hat_steps = list(range(0, 16, 2 if rng.random() < 0.6 else 1))
    sixteenth = song["beat"] / 4
    kicks_and_snares = np.zeros(song["num_frames"])
    hats = np.zeros(song["num_frames"])
    for bar_index in np.flatnonzero(_active_bars(rng, song["nb_bars"], 0.15)):
        for step in range(16):
            start = int((bar_index * song["bar"] + step * sixteenth) * sample_rate)
            velocity = rng.uniform(0.8, 1.0)
            if step in kick_steps:
                add_at(kicks_and_snares, start, velocity * kick)
            if step in snare_steps:
                add_at(kicks_and_snares, start, velocity * snare)
            if step in hat_steps:
                add_at(hats, start, velocity * (1.0 if step % 4 == 0 else 0.6) * hat)
    pan = rng.uniform(-0.3, 0.3)
    hat_pan = np.clip(pan + rng.choice([-1, 1]) * rng.uniform(0.2, 0.5), -1, 1)
    return _pan(kicks_and_snares, pan) + _pan(hats, hat_pan)


def _bass(rng: np.random.Generator, song: dict) -> np.ndarray:
    sample_rate = song["sample_rate"]
    out = np.zeros(song["num_frames"])
    octave = int(rng.integers(28, 34))  # MIDI 28-33: 41-55 Hz roots, fifths up to 147 Hz
    steps = [0, 4, 8, 12] if rng.random() < 0.5 else [0, 3, 6, 8, 11, 14]  # 16th positions
    harmonics = np.arange(1, 7)
    table = wavetable(1 / harmonics**1.5)
    table /= np.abs(table).max()
    for bar_index in np.flatnonzero(_active_bars(rng, song["nb_bars"], 0.15)):
        root_degree = song["chords"][bar_index]
        for position, step in enumerate(steps):
            degree = root_degree + (4 if position % 3 == 2 and rng.random() < 0.5 else 0)
            midi = _scale_note(song, degree, octave - song["key"])
            end = steps[position + 1] if position + 1 < len(steps) else 16
            frames = int((end - step) * song["beat"] / 4 * sample_rate)
            t = np.arange(frames) / sample_rate
            note = oscillate(table, np.full(frames, _hz(midi)), sample_rate)
            note *= np.exp(-t / 0.4) * raised_cosine_envelope(
                frames, int(0.005 * sample_rate), 1323
            )
            start = int((bar_index * song["bar"] + step * song["beat"] / 4) * sample_rate)
            add_at(out, start, note)
    return out


def _pads(rng: np.random.Generator, song: dict) -> np.ndarray:
    sample_rate = song["sample_rate"]
    out = np.zeros(song["num_frames"])
    voicing = int(rng.integers(60, 68))  # chord notes within MIDI 60-86 (262-1175 Hz)
    harmonics = np.arange(1, 9)
    table = wavetable(1 / harmonics**1.2)
    table /= np.abs(table).max()
    frames = int((song["bar"] + 0.25) * sample_rate)  # ring into the next bar
    envelope = raised_cosine_envelope(frames, int(0.15 * sample_rate), int(0.25 * sample_rate))
    sevenths = rng.random(7) < 0.4  # per chord degree: add the seventh
    played: dict[tuple[int, ...], np.ndarray] = {}  # the progression repeats: synthesise once
    for bar_index in np.flatnonzero(_active_bars(rng, song["nb_bars"], 0.2)):
        root_degree = song["chords"][bar_index]
        chord = (root_degree, root_degree + 2, root_degree + 4)
        if sevenths[root_degree]:
            chord += (root_degree + 6,)
        if chord not in played:
            sound = np.zeros(frames)
            for degree in chord:
                midi = _scale_note(song, degree, voicing - song["key"])
                for detune in (-0.06, 0.06):  # semitones: two slightly detuned oscillators
                    frequency = np.full(frames, _hz(midi + detune))
                    sound += oscillate(table, frequency, sample_rate, phase=rng.random())
            played[chord] = 0.25 * sound * envelope
        add_at(out, int(bar_index * song["bar"] * sample_rate), played[chord])
    return out


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power panning, ``position`` in [-1 (left), 1 (right)] -> (frames, 2)."""
    angle = (position + 1) * np.pi / 4
    return np.stack([np.cos(angle) * mono, np.sin(angle) * mono], axis=1)


# ---------------------------------------------------------------------------------------------


class ToyMUSDB(MUSDBData):
    """The generated toy set (``dataset=toy``), read through ``MUSDBData`` (WAV layout).

    On first use the set is generated into ``root``, or with ``root=None`` into
    ``<cache>/toy-musdb-<hash of the parameters>``, so every parameter set has its own folder.
    Its track names are not MUSDB18's, so a seeded ``valid_fraction`` of the training tracks is
    held out for validation. ``toy_seed``, ``nb_train_tracks``, ``nb_test_tracks``,
    ``train_duration`` and ``test_duration`` (seconds) choose the generated set; ``options``
    are ``MUSDBData``'s (targets, segment, sample_rate, augmentation, ...).
    """

    def __init__(
        self,
        root: str | None = None,
        toy_seed: int = 0,
        nb_train_tracks: int = 8,
        nb_test_tracks: int = 3,
        train_duration: float = 12.0,
        test_duration: float = 10.0,
        cache_dir: str | None = None,
        **options: Any,
    ):
        generator_arguments = {
            "seed": toy_seed,
            "nb_train_tracks": nb_train_tracks,
            "nb_test_tracks": nb_test_tracks,
            "train_duration": train_duration,
            "test_duration": test_duration,
        }
        root = generated_set(
            root, cache_dir, "toy-musdb", _TOY_VERSION, generate_toy_musdb, generator_arguments
        )
        super().__init__(root=root, is_wav=True, download=False, cache_dir=cache_dir, **options)

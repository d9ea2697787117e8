"""A small generated speech-separation set in the wsj0-2mix layout, read through ``WSJ0Mix``.

``generate_toy_speech`` synthesises voiced "speech": each speaker has a pitch range, a vocal
tract length (formant scale) and a speaking rate of their own; an utterance is a sequence of
syllables (vowels whose formants glide from one to the next, shaped by syllable-like
amplitude envelopes, some opened by a noisy consonant) grouped into words and phrases with
pauses, over a falling pitch contour with accents. Mixtures of 2 or 3 different speakers are
written as ``<root>/{tr,cv,tt}/{mix,s1,s2[,s3]}/<id>.wav`` (32-bit float, mono); training,
validation and test speakers are disjoint, as in wsj0-2mix. The mixture equals the sum of the
sources exactly in float32, and the same parameters give bit-identical files.
"""

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sepkit.data.cache import write_float_wav
from sepkit.data.speech import WSJ0Mix
from sepkit.data.toy import (
    band_noise,
    build_once,
    exact_mixture,
    generated_set,
    oscillate,
    raised_cosine_envelope,
    wavetable,
)
from sepkit.errors import SepkitError

_TOY_SPEECH_VERSION = 1  # bump when the synthesis changes, so cached sets are regenerated
# Vowel formants (F1, F2, F3) in Hz of an adult male voice (Peterson & Barney 1952); each
# speaker scales them by their own vocal tract factor.
_VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480),
           (570, 840, 2410), (660, 1720, 2410), (440, 1020, 2240), (490, 1350, 1690)]  # fmt: skip
_CONTROL_RATE = 100  # Hz: pitch, formants and loudness are planned every 10 ms
_SPLITS = {"tr": 0, "cv": 1, "tt": 2}


def generate_toy_speech(
    root: str | Path,
    n_src: int = 2,
    sample_rate: int = 8000,
    seed: int = 0,
    nb_train: int = 64,
    nb_valid: int = 16,
    nb_test: int = 16,
    min_duration: float = 2.0,
    max_duration: float = 4.0,
) -> Path:
    """Write the toy speech set into ``root`` (if not already there) and return ``root``.

    ``nb_train``, ``nb_valid`` and ``nb_test`` mixtures of ``n_src`` speakers go to tr, cv and
    tt; each lasts U(min_duration, max_duration) seconds ("min" mode: all speakers of a
    mixture have its length). Built in a temporary sibling folder and renamed into place; a
    ``root`` holding the same parameters is reused, anything else refused.
    """
    parameters = {
        "generator": "sepkit.data.toy_speech.generate_toy_speech",
        "version": _TOY_SPEECH_VERSION,
        "n_src": int(n_src),
        "sample_rate": int(sample_rate),
        "seed": int(seed),
        "nb_train": int(nb_train),
        "nb_valid": int(nb_valid),
        "nb_test": int(nb_test),
        "min_duration": float(min_duration),
        "max_duration": float(max_duration),
    }
    if n_src not in (2, 3) or sample_rate < 8000:
        raise SepkitError(
            f"toy speech needs n_src 2 or 3 and a rate of 8000 Hz or more: {parameters}"
        )
    if min(nb_train, nb_valid, nb_test) < 1 or not 0 < min_duration <= max_duration:
        raise SepkitError(f"toy speech parameters {parameters} need mixtures in every split")
    return build_once(Path(root).expanduser(), parameters, _write_toy_speech)


def _write_toy_speech(folder: Path, parameters: dict) -> None:
    sample_rate, n_src = parameters["sample_rate"], parameters["n_src"]
    counts = {
        "tr": parameters["nb_train"],
        "cv": parameters["nb_valid"],
        "tt": parameters["nb_test"],
    }
    for split, code in _SPLITS.items():
        nb_speakers = 16 if split == "tr" else 6
        speakers = [
            _speaker(np.random.default_rng([parameters["seed"], code, 1, number]))
            for number in range(nb_speakers)
        ]
        for subfolder in ["mix"] + [f"s{number}" for number in range(1, n_src + 1)]:
            (folder / split / subfolder).mkdir(parents=True)
        for index in range(counts[split]):
            rng = np.random.default_rng([parameters["seed"], code, 0, index])
            chosen = rng.choice(len(speakers), size=n_src, replace=False)
            duration = rng.uniform(parameters["min_duration"], parameters["max_duration"])
            frames = round(duration * sample_rate)
            voices = []
            for number in chosen:
                voice = _utterance(rng, speakers[number], frames, sample_rate)
                level_db = rng.uniform(-2.5, 2.5)  # wsj0-2mix mixes at 0-5 dB between speakers
                voices.append(voice * 10 ** (level_db / 20) / (np.sqrt(np.mean(voice**2)) + 1e-12))
            sources, mixture = exact_mixture(voices)
            name = f"{split}{index:04d}_" + "_".join(f"spk{number:02d}" for number in chosen)
            write_float_wav(folder / split / "mix" / f"{name}.wav", mixture, sample_rate)
            for number, source in enumerate(sources, start=1):
                write_float_wav(folder / split / f"s{number}" / f"{name}.wav", source, sample_rate)


def _speaker(rng: np.random.Generator) -> dict:
    """A voice: median pitch (Hz) from a low, middle or high register, pitch span
    (semitones), vocal tract factor for the formants, syllable length (s) and breathiness."""
    register = rng.choice([(85.0, 140.0), (150.0, 230.0), (220.0, 300.0)])
    return {
        "pitch": rng.uniform(*register),
        "span": rng.uniform(2.0, 6.0),
        "tract": rng.uniform(0.85, 1.2),
        "syllable": rng.uniform(0.13, 0.24),
        "breath": rng.uniform(0.01, 0.05),
    }


@dataclass
class _Plan:
    """What one utterance says, on the control grid (``_CONTROL_RATE`` Hz): loudness, pitch
    accents in semitones, vowel targets (control frame, formants in Hz), the phrase starts
    (seconds) and the noisy consonant onsets (start sample, length in samples)."""

    loudness: np.ndarray
    pitch_semitones: np.ndarray
    vowel_targets: list[tuple[int, np.ndarray]] = field(default_factory=list)
    phrase_starts: list[float] = field(default_factory=list)
    consonants: list[tuple[int, int]] = field(default_factory=list)


def _utterance(rng: np.random.Generator, speaker: dict, frames: int, sample_rate: int):
    """``frames`` samples of one speaker talking (float64, mono), with pauses."""
    plan = _plan_utterance(rng, speaker, frames, sample_rate)
    pitch, formants = _contours(plan, speaker)
    return _speak(rng, speaker, plan, pitch, formants, frames, sample_rate)


def _plan_utterance(
    rng: np.random.Generator, speaker: dict, frames: int, sample_rate: int
) -> _Plan:
    """Words of one to three syllables, pauses between words, breaths between phrases."""
    nb_control = int(np.ceil(frames / sample_rate * _CONTROL_RATE)) + 2
    plan = _Plan(np.zeros(nb_control), np.zeros(nb_control))
    time = rng.uniform(0.0, 0.4)  # leading silence, as in read speech
    plan.phrase_starts.append(time)
    end = frames / sample_rate - 0.1
    while time < end:
        for _ in range(rng.integers(1, 4)):  # a word of one to three syllables
            length = speaker["syllable"] * rng.uniform(0.7, 1.4)
            if time + length > end:
                break
            first, last = int(time * _CONTROL_RATE), int((time + length) * _CONTROL_RATE)
            span = max(last - first, 2)
            envelope = np.sin(np.pi * np.linspace(0, 1, span)) ** 0.7
            plan.loudness[first : first + span] = np.maximum(
                plan.loudness[first : first + span], envelope * rng.uniform(0.6, 1.0)
            )
            accent = rng.uniform(-0.5, 1.5) if rng.random() < 0.4 else 0.0
            plan.pitch_semitones[first : first + span] += accent * envelope
            vowel = np.array(_VOWELS[rng.integers(len(_VOWELS))]) * speaker["tract"]
            plan.vowel_targets.append(((first + last) // 2, vowel))
            if rng.random() < 0.5:
                plan.consonants.append(
                    (int(time * sample_rate), int(rng.uniform(0.03, 0.07) * sample_rate))
                )
            time += length
        time += rng.uniform(0.03, 0.12)  # between words
        if rng.random() < 0.2:  # between phrases: a breath, and the pitch resets
            time += rng.uniform(0.25, 0.6)
            plan.phrase_starts.append(time)
    return plan


def _contours(plan: _Plan, speaker: dict) -> tuple[np.ndarray, np.ndarray]:
    """Pitch (Hz, per control frame) and the three formant trajectories (3, control frames;
    Hz) of a planned utterance."""
    controls = np.arange(len(plan.loudness))
    # declination: the pitch starts high in each phrase and falls by about 1.5 semitones/s
    starts = np.array(plan.phrase_starts) * _CONTROL_RATE
    since_phrase = controls - starts[np.maximum(np.searchsorted(starts, controls, "right") - 1, 0)]
    semitones = plan.pitch_semitones + (
        0.3 * speaker["span"] - 1.5 * np.maximum(since_phrase, 0) / _CONTROL_RATE
    )
    formants = np.zeros((3, len(controls)))
    if plan.vowel_targets:
        centres = np.array([centre for centre, _ in plan.vowel_targets])
        for formant in range(3):
            targets = np.array([vowel[formant] for _, vowel in plan.vowel_targets])
            formants[formant] = np.interp(controls, centres, targets)  # gliding trajectories
    else:
        formants[:] = np.array(_VOWELS[0])[:, None] * speaker["tract"]
    semitones = np.clip(semitones, -speaker["span"], speaker["span"])
    return speaker["pitch"] * 2 ** (semitones / 12), formants


def _speak(
    rng: np.random.Generator,
    speaker: dict,
    plan: _Plan,
    pitch: np.ndarray,
    formants: np.ndarray,
    frames: int,
    sample_rate: int,
) -> np.ndarray:
    """The planned utterance as ``frames`` samples: a voice source at ``pitch`` shaped by the
    ``formants``, with breath noise and consonant bursts."""
    controls = np.arange(len(plan.loudness))
    # the voice source: a harmonic series with a falling spectral tilt, as many harmonics as
    # fit below the Nyquist frequency at the speaker's highest pitch
    positions = np.arange(frames) * _CONTROL_RATE / sample_rate  # in control periods
    pitch_samples = np.interp(positions, controls, pitch)
    pitch_samples *= 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 6) * positions / _CONTROL_RATE)
    nb_harmonics = max(1, int(0.45 * sample_rate // pitch.max()))
    source = oscillate(_voice_table(nb_harmonics), pitch_samples, sample_rate)
    loudness_samples = np.interp(positions, controls, plan.loudness)
    source += speaker["breath"] * band_noise(rng, frames, 500, 0.45 * sample_rate, sample_rate)
    voice = _formant_filter(source, formants, sample_rate) * loudness_samples
    for start, length in plan.consonants:
        burst = band_noise(rng, length, 0.25 * sample_rate, 0.48 * sample_rate, sample_rate)
        burst *= 0.3 * raised_cosine_envelope(length, length // 4, length // 2)
        voice[start : start + length] += burst[: max(0, min(length, frames - start))]
    return voice


@functools.lru_cache(maxsize=64)
def _voice_table(nb_harmonics: int) -> np.ndarray:
    """One cycle of the voice source: ``nb_harmonics`` harmonics falling as k**-1.2."""
    return wavetable(1 / np.arange(1, nb_harmonics + 1) ** 1.2)


def _formant_filter(signal: np.ndarray, formants: np.ndarray, sample_rate: int) -> np.ndarray:
    """Shape ``signal`` by three resonances following ``formants`` (3, control frames; Hz).

    Short-time Fourier filtering: 32-ms Hann frames every 8 ms, each multiplied by the
    resonance curve at that moment, overlap-added back.
    """
    n_fft = 2 ** int(np.ceil(np.log2(0.032 * sample_rate)))
    hop = n_fft // 4
    window = np.hanning(n_fft + 1)[:-1]
    padded = np.pad(signal, (n_fft, n_fft))
    nb_frames = (len(padded) - n_fft) // hop + 1
    starts = hop * np.arange(nb_frames)
    spectra = np.fft.rfft(padded[starts[:, None] + np.arange(n_fft)] * window, axis=1)
    centre_times = (starts + n_fft / 2 - n_fft) / sample_rate * _CONTROL_RATE
    bins = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    gain = np.full(spectra.shape, 0.03)
    for trajectory in formants:
        centre = np.interp(centre_times, np.arange(len(trajectory)), trajectory)[:, None]
        gain += 1 / (1 + ((bins[None, :] - centre) / (50 + 0.08 * centre)) ** 2)
    frames = np.fft.irfft(spectra * gain, n_fft, axis=1) * window
    # overlap-add in four passes: frames g, g+4, g+8, ... tile the signal without overlapping
    out = np.zeros(len(padded) + n_fft)
    weight = np.zeros(len(padded) + n_fft)
    for group in range(4):
        tiles = frames[group::4].reshape(-1)
        out[group * hop : group * hop + tiles.size] += tiles
        windows = np.tile(window**2, len(frames[group::4]))
        weight[group * hop : group * hop + windows.size] += windows
    return (out / np.maximum(weight, 1e-3))[n_fft : n_fft + len(signal)]


class ToySpeech(WSJ0Mix):
    """The generated toy speech set (``dataset=toy_speech``), read through ``WSJ0Mix``.

    On first use the set is generated into ``root``, or with ``root=None`` into
    ``<cache>/toy-speech-<hash of the parameters>``. ``toy_seed``, ``nb_train``,
    ``nb_valid``, ``nb_test``, ``min_duration`` and ``max_duration`` (seconds) choose the
    generated set; ``n_src`` and ``sample_rate`` both generate and read it; ``options`` are
    ``WSJ0Mix``'s (targets, segment, augmentation, ...; ``nb_channels``: channels served,
    the generated files are mono).
    """

    def __init__(
        self,
        root: str | None = None,
        n_src: int = 2,
        sample_rate: int = 8000,
        toy_seed: int = 0,
        nb_train: int = 64,
        nb_valid: int = 16,
        nb_test: int = 16,
        min_duration: float = 2.0,
        max_duration: float = 4.0,
        cache_dir: str | None = None,
        **options: Any,
    ):
        generator_arguments = {
            "n_src": n_src,
            "sample_rate": sample_rate,
            "seed": toy_seed,
            "nb_train": nb_train,
            "nb_valid": nb_valid,
            "nb_test": nb_test,
            "min_duration": min_duration,
            "max_duration": max_duration,
        }
        root = generated_set(
            root,
            cache_dir,
            "toy-speech",
            _TOY_SPEECH_VERSION,
            generate_toy_speech,
            generator_arguments,
        )
        super().__init__(
            root=root,
            n_src=n_src,
            mode="min",
            sample_rate=sample_rate,
            cache_dir=cache_dir,
            **options,
        )

"""sepkit.metrics against museval 0.4.1 itself, on generated audio.

The references are band-limited at 16 kHz and stored as 16-bit PCM, as MUSDB18's stems are
(AAC, read by musdb through ffmpeg as s16le): the case museval is run on in practice, where
the correlation matrices are nearly singular but the scores are still well defined.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import musdb
import museval
import numpy as np
import pytest
import soundfile
import torch
from scipy import signal

from sepkit.metrics import (
    bss_eval_v4,
    evaluate_track,
    improvement,
    sdr,
    sdr_improvement,
    si_sdr,
    si_sdr_improvement,
)
from sepkit.metrics.bsseval import levinson
from sepkit.metrics.bsseval import scores as bsseval_scores

RATE = 44100
METRICS = ("SDR", "ISR", "SIR", "SAR")
TOLERANCE_DB = 1e-3


def generated_stems(seconds: float, seed: int, num_sources: int = 4) -> np.ndarray:
    """(sources, samples, 2) music-like stems: band-pass noise and a tone under an envelope,
    low-passed at 16 kHz and rounded to 16 bits, as MUSDB18's stems are."""
    rng = np.random.default_rng(seed)
    num_samples = round(seconds * RATE)
    time = np.arange(num_samples) / RATE
    lowpass = signal.butter(12, 16000, fs=RATE, output="sos")
    stems = []
    for index in range(num_sources):
        band = signal.butter(4, [80 * (index + 1), 1500 * (index + 1)], "band", fs=RATE)
        stem = signal.lfilter(*band, rng.standard_normal((num_samples, 2)), axis=0)
        tone = np.sin(2 * np.pi * 110 * (index + 1) * time)
        stem += 0.5 * tone[:, None] * np.array([1.0, 0.7])
        stem *= (0.6 + 0.4 * np.sin(2 * np.pi * (0.4 + 0.3 * index) * time))[:, None]
        stem = signal.sosfilt(lowpass, stem, axis=0)
        stems.append(np.round(stem / np.abs(stem).max() * 0.4 * 32768) / 32768)
    return np.stack(stems)


def imperfect_estimates(references: np.ndarray, seed: int) -> np.ndarray:
    """Each reference filtered, plus leaks of the others, plus broadband noise."""
    rng = np.random.default_rng(seed)
    estimates = signal.lfilter([0.8, 0.25, -0.1], [1.0], references, axis=1)
    for index in range(len(references)):
        others = references.sum(axis=0) - references[index]
        estimates[index] += 0.05 * (index + 1) * others
    return estimates + 0.003 * rng.standard_normal(references.shape)


def museval_scores(references: np.ndarray, estimates: np.ndarray, **framing) -> dict:
    sdr_, isr, sir, sar = museval.evaluate(references, estimates, **framing)
    return {"SDR": sdr_, "ISR": isr, "SIR": sir, "SAR": sar}


def assert_same_scores(fast: dict, reference: dict, label: str) -> None:
    largest = 0.0
    for metric in METRICS:
        assert fast[metric].shape == reference[metric].shape, metric
        assert fast[metric].dtype == np.float64
        np.testing.assert_array_equal(np.isnan(fast[metric]), np.isnan(reference[metric]))
        finite = np.isfinite(reference[metric])
        if finite.any():
            largest = max(largest, np.abs(fast[metric] - reference[metric])[finite].max())
    print(f"{label}: largest difference to museval {largest:.2e} dB")
    assert largest < TOLERANCE_DB


@pytest.fixture(scope="module")
def track_with_silences() -> tuple[np.ndarray, np.ndarray]:
    """3.3 s, 4 stereo sources; the reference of source 1 is all zeros in window 1, the
    estimate of source 2 in window 2, and the estimates run 0.2 s past the references."""
    references = generated_stems(3.3, seed=0)
    estimates = imperfect_estimates(np.pad(references, ((0, 0), (0, 8820), (0, 0))), seed=1)
    references[1, RATE : 2 * RATE] = 0
    estimates[2, 2 * RATE : 3 * RATE] = 0
    return references, estimates


@pytest.fixture(params=["numpy", "torch"])
def kernels(request, monkeypatch) -> str:
    """On the CPU bss_eval_v4 computes with numpy and scipy; with "torch" it takes the code
    path of GPUs (torch tensors, torch's kernels), here on the CPU."""
    if request.param == "torch":
        monkeypatch.setattr(bsseval_scores, "_torch_device", lambda device: torch.device("cpu"))
    return request.param


def as_kernels_array(array: np.ndarray, kernels: str):
    """A numpy array as the code path `kernels` computes on: itself, or a CPU tensor."""
    return torch.from_numpy(array) if kernels == "torch" else array


def test_bss_eval_v4_equals_museval_evaluate(track_with_silences, kernels, monkeypatch):
    references, estimates = track_with_silences
    fast = bss_eval_v4(references, estimates)
    reference = museval_scores(references, estimates)
    assert fast["SDR"].shape == (4, 3)  # floor(3.3 s / 1 s) windows
    assert_same_scores(fast, reference, f"4 stereo sources, 1 s windows, {kernels} kernels")
    # the windows with an all-zero reference or estimate are NaN for every source
    assert np.isnan(fast["SDR"][:, 1:]).all() and not np.isnan(fast["SDR"][:, 0]).any()

    # the dense factorisation, which takes over from the block Levinson recursion on
    # ill-conditioned systems
    monkeypatch.setattr(levinson, "RESIDUAL_TOLERANCE", -1.0)
    dense = bss_eval_v4(references, estimates)
    assert_same_scores(dense, reference, f"same, dense solver, {kernels} kernels")


def test_block_levinson_and_its_resolve_solve_the_dense_system(kernels):
    # a well-conditioned block-Toeplitz Gram matrix: lags of 3 noisy signals, 6 lags
    rng = np.random.default_rng(3)
    signals = rng.standard_normal((3, 400))
    num_lags, size = 6, 3
    lags = np.stack(
        [signals[:, : 400 - k] @ signals[:, k:].T for k in range(num_lags)]
    )  # R(k)[p, q] = sum_n x_p[n] x_q[n + k]
    dense = np.zeros((num_lags * size, num_lags * size))
    for a in range(num_lags):
        for b in range(num_lags):
            block = lags[a - b] if a >= b else lags[b - a].T
            dense[a * size : (a + 1) * size, b * size : (b + 1) * size] = block
    first, second = (rng.standard_normal((num_lags, size, k)) for k in (2, 4))

    solution, solved, resolve = levinson.block_levinson(
        as_kernels_array(lags[None], kernels), as_kernels_array(first[None], kernels)
    )
    assert solved.tolist() == [True]
    expected = np.linalg.solve(dense, first.reshape(-1, 2)).reshape(first.shape)
    np.testing.assert_allclose(np.asarray(solution[0]), expected, rtol=1e-10, atol=1e-12)
    # other right-hand sides (more columns) from the kept predictors
    expected = np.linalg.solve(dense, second.reshape(-1, 4)).reshape(second.shape)
    other = resolve(as_kernels_array(second[None], kernels))[0]
    np.testing.assert_allclose(np.asarray(other), expected, rtol=1e-10, atol=1e-12)


def test_block_levinson_reports_a_singular_system(kernels):
    # R(0) of two identical channels is singular: the caller then factorises densely
    lags = np.zeros((1, 4, 2, 2))
    lags[0, 0] = 1.0
    rhs = np.ones((1, 4, 2, 1))
    _, solved, _ = levinson.block_levinson(
        as_kernels_array(lags, kernels), as_kernels_array(rhs, kernels)
    )
    assert solved.tolist() == [False]


def test_bss_eval_v4_overlapping_windows_shorter_estimates_and_tensors():
    references = generated_stems(2.0, seed=2, num_sources=2)[:, :, :1]
    estimates = imperfect_estimates(references, seed=3)[:, :-5000]  # padded with zeros
    framing = {"window": 30000, "hop": 12000}
    fast = bss_eval_v4(torch.from_numpy(references), torch.from_numpy(estimates), **framing)
    reference = museval_scores(references, estimates, win=30000, hop=12000)
    assert fast["SDR"].shape == (2, 5)  # floor((88200 - 30000 + 12000) / 12000)
    assert_same_scores(fast, reference, "2 mono sources, overlapping windows")


def test_bss_eval_v4_refuses_a_source_silent_over_the_whole_signal():
    references = generated_stems(1.5, seed=4, num_sources=2)
    estimates = imperfect_estimates(references, seed=5)
    references[1] = 0
    with pytest.raises(ValueError, match=r"reference source\(s\) \[1\] are silent"):
        bss_eval_v4(references, estimates)
    with pytest.raises(ValueError, match="sources and channels must match"):
        bss_eval_v4(references, estimates[:, :, :1])


def test_bss_eval_v4_warns_when_the_filters_are_rounding_noise():
    # float64 references with nothing above 6 kHz: the filter systems are singular in
    # float64 and ISR/SIR/SAR rounding noise (museval's move by dB when its sources are
    # reordered); SDR, which needs no filters, is still exact
    references = generated_stems(2.0, seed=6, num_sources=2)
    spectra = np.fft.rfft(references, axis=1)
    spectra[:, np.fft.rfftfreq(references.shape[1], 1 / RATE) > 6000] = 0
    references = np.fft.irfft(spectra, n=references.shape[1], axis=1)
    estimates = imperfect_estimates(references, seed=7)
    with pytest.warns(UserWarning, match="ill-conditioned"):
        scores = bss_eval_v4(references, estimates, device="cpu")
    windows = references[:, : 2 * RATE].reshape(2, 2, RATE, 2)
    errors = (estimates - references)[:, : 2 * RATE].reshape(2, 2, RATE, 2)
    expected = 10 * np.log10((windows**2).sum(axis=(2, 3)) / (errors**2).sum(axis=(2, 3)))
    np.testing.assert_allclose(scores["SDR"], expected, atol=1e-9)


def write_musdb_track(root: Path, stems: np.ndarray) -> musdb.MultiTrack:
    """A one-track MUSDB18 (WAV layout) test set on disk, read back through musdb."""
    folder = root / "test" / "Generated - Song"
    folder.mkdir(parents=True)
    for name, stem in zip(["drums", "bass", "other", "vocals"], stems):
        soundfile.write(folder / f"{name}.wav", stem, RATE, subtype="PCM_16")
    soundfile.write(folder / "mixture.wav", stems.sum(axis=0) / 4, RATE, subtype="PCM_16")
    return musdb.DB(root=str(root), is_wav=True, subsets="test").tracks[0]


def flatten(scores: dict) -> list[tuple]:
    return [
        (target["name"], frame["time"], frame["duration"], metric, float(value))
        for target in scores["targets"]
        for frame in target["frames"]
        for metric, value in frame["metrics"].items()
    ]


@pytest.fixture(scope="module")
def musdb_track(tmp_path_factory) -> musdb.MultiTrack:
    # mono keeps museval's filter systems 8 times cheaper; stereo is tested above
    stems = generated_stems(2.5, seed=8)[:, :, :1]
    return write_musdb_track(tmp_path_factory.mktemp("musdb"), stems)


def test_evaluate_track_equals_museval_eval_mus_track(musdb_track):
    names = ["drums", "bass", "other", "vocals"]
    stems = np.stack([musdb_track.sources[name].audio for name in names])
    estimates = dict(zip(names, imperfect_estimates(stems, seed=9)))
    estimates["vocals"][RATE : 2 * RATE] = 0  # a silent window: NaN in the JSON
    estimates["accompaniment"] = estimates["drums"] + estimates["bass"] + estimates["other"]
    expected = flatten(museval.eval_mus_track(musdb_track, estimates).scores)
    assert any(math.isnan(row[4]) for row in expected)

    # references as musdb reads them; accompaniment left for evaluate_track to build
    fast = evaluate_track(dict(zip(names, stems)), estimates)

    assert [t["name"] for t in fast["targets"]] == [
        "drums", "bass", "other", "vocals", "accompaniment"
    ]  # fmt: skip
    assert [row[:4] for row in flatten(fast)] == [row[:4] for row in expected]
    largest = 0.0
    for (*_, value), (*_, expected_value) in zip(flatten(fast), expected):
        assert math.isnan(value) == math.isnan(expected_value)
        if not math.isnan(value):
            largest = max(largest, abs(value - expected_value))
    print(f"evaluate_track: largest difference to eval_mus_track {largest:.2e} dB")
    assert largest < TOLERANCE_DB


def test_evaluate_track_museval_backend_is_eval_mus_track(musdb_track):
    # vocals are scored with bass in a first call (and dropped from it), then again with
    # the accompaniment in a second call; bass is reported from the first
    references = {name: source.audio for name, source in musdb_track.sources.items()}
    stems = np.stack([references["vocals"], references["bass"]])
    estimates = dict(zip(["vocals", "bass"], imperfect_estimates(stems, seed=12)))
    estimates["accompaniment"] = 0.9 * musdb_track.targets["accompaniment"].audio
    expected = flatten(museval.eval_mus_track(musdb_track, estimates).scores)

    via_museval = evaluate_track(references, estimates, backend="museval")

    assert [t["name"] for t in via_museval["targets"]] == [
        "bass",
        "vocals",
        "accompaniment",
    ]
    assert [row[:4] for row in flatten(via_museval)] == [row[:4] for row in expected]
    np.testing.assert_array_equal(
        [row[4] for row in flatten(via_museval)], [row[4] for row in expected]
    )


def test_evaluate_track_scores_a_silent_stem_nan_and_the_others_without_it():
    stems = generated_stems(2.0, seed=10)
    names = ["drums", "bass", "other", "vocals"]
    estimates = dict(zip(names, imperfect_estimates(stems, seed=11)))
    stems[1] = 0  # no bass in this track
    references = dict(zip(names, stems))
    with pytest.raises(ValueError):  # museval gives up on the whole track
        museval.evaluate(stems, np.stack(list(estimates.values())))

    with pytest.warns(UserWarning, match="bass: the reference is silent"):
        scores = evaluate_track(references, estimates)
    by_name = {target["name"]: target["frames"] for target in scores["targets"]}
    assert list(by_name) == ["vocals", "drums", "bass", "other"]
    assert all(math.isnan(v) for frame in by_name["bass"] for v in frame["metrics"].values())
    others = ["vocals", "drums", "other"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alone = bss_eval_v4(
            np.stack([references[n] for n in others]),
            np.stack([estimates[n] for n in others]),
        )
    for index, name in enumerate(others):
        assert [frame["metrics"]["SIR"] for frame in by_name[name]] == [
            round(value, 5) for value in alone["SIR"][index]
        ]


def test_si_sdr_known_value_and_scale_invariance():
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(2, 3, 2, 8000, generator=generator, dtype=torch.float64)
    noise = torch.randn(reference.shape, generator=generator, dtype=torch.float64)
    reference = reference - reference.mean(-1, keepdim=True)
    noise = noise - noise.mean(-1, keepdim=True)
    # noise orthogonal to the reference, at 1 % of its energy: exactly 20 dB
    noise = (
        noise
        - (noise * reference).sum(-1, keepdim=True)
        / reference.square().sum(-1, keepdim=True)
        * reference
    )
    noise = noise * (0.01 * reference.square().sum(-1, keepdim=True) / noise.square().sum(
        -1, keepdim=True
    )).sqrt()  # fmt: skip
    estimate = 0.5 * reference + 0.5 * noise
    scores = si_sdr(estimate, reference)
    assert scores.shape == (2, 3, 2)
    torch.testing.assert_close(scores, torch.full_like(scores, 20.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(si_sdr(3.0 * estimate, 0.2 * reference), scores)
    # a DC offset changes nothing with zero_mean, and lowers the score without
    torch.testing.assert_close(si_sdr(estimate + 1.0, reference), scores)
    assert (si_sdr(estimate + 1.0, reference, zero_mean=False) < scores).all()
    assert torch.isfinite(si_sdr(torch.zeros(100), torch.zeros(100)))


def test_sdr_is_demucs_new_sdr():
    reference = torch.ones(1, 2, 2, 1000)
    estimate = 0.9 * reference
    scores = sdr(estimate, reference)
    assert scores.shape == (1, 2)
    expected = 10 * math.log10((2000 + 1e-7) / (2000 * 0.01 + 1e-7))
    torch.testing.assert_close(scores, torch.full((1, 2), expected))
    assert (sdr(reference, reference) > 100).all()  # finite for a perfect estimate


def test_si_sdr_and_sdr_of_numpy_arrays_equal_those_of_tensors():
    # the scoring processes of `sepkit eval` compute them on numpy arrays, without torch
    rng = np.random.default_rng(5)
    reference = rng.standard_normal((3, 2, 5000))
    estimate = reference + 0.3 * rng.standard_normal(reference.shape)
    tensors = torch.from_numpy(estimate), torch.from_numpy(reference)
    for metric in (si_sdr, sdr):
        values = metric(estimate, reference)
        assert isinstance(values, np.ndarray) and values.shape == metric(*tensors).shape
        np.testing.assert_allclose(values, metric(*tensors).numpy(), rtol=1e-12)
    # one flat signal gives a number
    assert np.isfinite(float(si_sdr(estimate.reshape(-1), reference.reshape(-1))))


def test_improvement_over_the_mixture():
    generator = torch.Generator().manual_seed(1)
    sources = torch.randn(2, 3, 2, 4000, generator=generator, dtype=torch.float64)
    mixture = sources.sum(dim=1)  # (batch, channels, time)
    estimates = sources + 0.1 * torch.randn(sources.shape, generator=generator, dtype=torch.float64)
    mixture_as_estimate = mixture.unsqueeze(1).expand_as(sources)
    torch.testing.assert_close(
        si_sdr_improvement(estimates, sources, mixture.unsqueeze(1)),
        si_sdr(estimates, sources) - si_sdr(mixture_as_estimate, sources),
    )
    torch.testing.assert_close(
        sdr_improvement(estimates, sources, mixture.unsqueeze(1)),
        improvement(sdr, estimates, sources, mixture.unsqueeze(1)),
    )
    assert (sdr_improvement(estimates, sources, mixture.unsqueeze(1)) > 0).all()
    with pytest.raises(ValueError, match="unsqueeze"):
        si_sdr_improvement(estimates, sources, mixture)

"""``sepkit eval oracle=...``: sigsep's oracle estimates from the true stems, the ceiling
(ideal masks) and the floor (the mixture) that every quality table is read against."""

from __future__ import annotations

import csv
from pathlib import Path

import musdb
import museval
import numpy as np
import pytest
import soundfile

from sepkit.evaluate.oracle import oracle_estimates
from tests.conftest import TINY_TOY, run_sepkit

TOY = ["dataset=toy", *TINY_TOY, "progress=false"]
RATE = 44100
NAMES = ["drums", "bass", "other", "vocals"]


def stems(seconds: float = 2.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Four stereo noises of different loudness and colour, (samples, channels) each."""
    rng = np.random.default_rng(seed)
    length = int(seconds * RATE)
    signals = {}
    for index, name in enumerate(NAMES):
        noise = rng.standard_normal((length, 2))
        signals[name] = 0.1 * (index + 1) * np.cumsum(noise, axis=0) / np.sqrt(index + 1) ** 2
        signals[name] -= signals[name].mean(axis=0)
    return signals


def read_results(run: Path) -> list[dict]:
    with open(run / "results.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.parametrize("method", ["irm1", "irm2"])
def test_ratio_masks_share_the_mixture_among_all_stems(method):
    sources = stems()
    mixture = sum(sources.values())
    estimates = oracle_estimates(method, mixture, sources, NAMES)
    assert np.abs(sum(estimates.values()) - mixture).max() < 1e-4
    for name in NAMES:  # each estimate is nearer its own stem than the mixture is
        error = np.sum((estimates[name] - sources[name]) ** 2)
        assert error < np.sum((mixture - sources[name]) ** 2)


def test_binary_mask_gives_each_bin_to_one_stem():
    sources = stems(seed=1)
    mixture = sum(sources.values())
    estimates = oracle_estimates("ibm", mixture, sources, NAMES)
    # a bin goes wholly to the stem holding more than half of the magnitude, or to none
    assert np.sum(estimates["vocals"] ** 2) > 0
    assert np.sum(sum(estimates.values()) ** 2) <= np.sum(mixture**2) * 1.001
    alone = oracle_estimates("ibm", sources["bass"], {"bass": sources["bass"]}, ["bass"])
    assert np.abs(alone["bass"] - sources["bass"]).max() < 1e-5


def test_a_silent_stem_gets_silence_and_the_mixture_oracle_the_mixture():
    sources = stems(seed=2)
    sources["vocals"] = np.zeros_like(sources["vocals"])
    mixture = sum(sources.values())
    assert np.abs(oracle_estimates("irm1", mixture, sources, ["vocals"])["vocals"]).max() < 1e-6
    same = oracle_estimates("mixture", mixture, sources, NAMES)
    assert all(np.array_equal(same[name], mixture) for name in NAMES)


@pytest.mark.parametrize("accompaniment", [True, False])
def test_irm1_table_is_museval_on_the_same_masks(tmp_path, accompaniment):
    # with the accompaniment museval scores vocals against it; without, among the four stems
    run = tmp_path / "irm1"
    result = run_sepkit(
        "eval", "oracle=irm1", *TOY, f"out_dir={run}", "save_estimates=true", "workers=2",
        f"oracle_accompaniment={str(accompaniment).lower()}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "| vocals | IRM1 |" in result.stdout and "| vocals | mixture |" in result.stdout
    assert ("| accompaniment | IRM1 |" in result.stdout) == accompaniment
    rows = read_results(run)
    ours = {
        (row["track"], row["target"]): float(row["value"])
        for row in rows
        if row["method"] == "IRM1" and row["metric"] == "SDR"
    }
    estimates = run / "estimates" / "test"
    database = musdb.DB(root=str(_toy_root(run)), subsets="test", is_wav=True)
    compared = 0
    for track in database:
        folder = estimates / track.name
        user_estimates = {p.stem: soundfile.read(p)[0] for p in folder.glob("*.wav")}
        assert set(user_estimates) == {*NAMES, *(["accompaniment"] if accompaniment else [])}
        store = museval.eval_mus_track(track, user_estimates)
        frame = store.df
        for target in user_estimates:
            values = frame[(frame.target == target) & (frame.metric == "SDR")]["score"]
            assert ours[(track.name, target)] == pytest.approx(np.nanmedian(values), abs=1e-3)
            compared += 1
    assert compared == (10 if accompaniment else 8)
    # the ceiling: the ideal ratio mask is far above the mixture on every target
    mixture = {
        (row["track"], row["target"]): float(row["value"])
        for row in rows
        if row["method"] == "mixture" and row["metric"] == "SDR"
    }
    assert all(ours[key] > mixture[key] + 5 for key in ours)


def _toy_root(run: Path) -> Path:
    """The toy set's folder, as the evaluation recorded the test tracks it read."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from sepkit.cli import _register_resolvers
    from sepkit.config import config_dir, register_schemas

    register_schemas()
    _register_resolvers()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("eval", overrides=TOY)
    return Path(instantiate(cfg.dataset, _convert_="all").root)


def test_compare_puts_an_oracle_beside_another_method(tmp_path):
    ceiling = tmp_path / "ibm"
    assert run_sepkit("eval", "oracle=ibm", *TOY, f"out_dir={ceiling}").returncode == 0
    floor = tmp_path / "mix"
    result = run_sepkit("eval", "oracle=mixture", *TOY, f"out_dir={floor}", f"compare=[{ceiling}]")
    assert result.returncode == 0, result.stderr
    methods = {row["method"] for row in read_results(floor)}
    assert methods == {"MIX", "IBM", "mixture"}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["oracle=irm3"], "oracle=irm3: choose one of irm1, irm2, ibm, mixture"),
        (["oracle=irm1", "pretrained=umxhq"], "choose one thing to evaluate"),
    ],
)
def test_bad_oracle_is_a_one_line_error(tmp_path, arguments, message):
    result = run_sepkit("eval", *arguments, *TOY, f"out_dir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()

"""Every model config trains from ``model=<name>`` alone, on the toy music set and on the
toy speech set, then rebuilds, separates and evaluates; a pair that cannot work is refused
with one line and leaves nothing behind. The models are the files of configs/model/: a new
one is covered without touching this test (at its default size unless SMALL_MODELS in
tests/helpers.py shrinks it)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import soundfile
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from sepkit.checkpoint import build_model, load_checkpoint
from sepkit.cli import _register_resolvers, main
from sepkit.config import config_dir, register_schemas
from sepkit.data.base import read_track
from sepkit.losses import PermutationInvariantLoss, ScaleInvariantSDRLoss
from tests.conftest import TEST_THREADS, run_sepkit
from tests.helpers import SMALL_MODELS

MODELS = sorted(path.stem for path in (config_dir() / "model").glob("*.yaml"))
# the recipes' --smoke data (recipes/smoke.sh): a few seconds of generated audio
DATASETS = {
    "toy": [
        "dataset=toy", "dataset.nb_train_tracks=2", "dataset.nb_test_tracks=1",
        "dataset.train_duration=2.0", "dataset.test_duration=1.0", "dataset.segment=0.5",
        "dataset.samples_per_track=2", "dataset.valid_fraction=0.5",
    ],
    "toy_speech": [
        "dataset=toy_speech", "dataset.nb_train=4", "dataset.nb_valid=2", "dataset.nb_test=2",
        "dataset.min_duration=1.0", "dataset.max_duration=1.5", "dataset.segment=1.0",
    ],
}  # fmt: skip
ONE_STEP = [
    "trainer.epochs=1", "trainer.steps_per_epoch=1", "trainer.batch_size=2",
    "trainer.device=cpu", "trainer.progress=false", "trainer.patience=null",
    f"trainer.threads={TEST_THREADS}",
]  # fmt: skip


def test_every_model_has_a_small_size_or_is_tested_at_its_default():
    # SMALL_MODELS only shrinks models that exist: a renamed model must not keep a stale row
    assert set(SMALL_MODELS) <= set(MODELS)


def _first_test_track(dataset: str):
    """The dataset's first test track, from the same generated set the run trained on."""
    register_schemas(("dataset",))
    _register_resolvers()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("eval", overrides=DATASETS[dataset])
    return instantiate(cfg.dataset, _convert_="all").test_tracks()[0]


def _sepkit_here(*arguments: str) -> int:
    """``sepkit <arguments>`` in this process (no second interpreter to start); its status."""
    try:
        main(list(arguments))
    except SystemExit as stop:
        return int(stop.code or 0)
    return 0


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("model", MODELS)
def test_model_alone_trains_separates_and_evaluates(model: str, dataset: str, tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_sepkit(
        "train", f"model={model}", *DATASETS[dataset], *ONE_STEP,
        *SMALL_MODELS.get(model, []), f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    if result.returncode != 0:
        # only the pairing check may refuse: one line naming the pair, no run directory
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stdout + result.stderr
        assert len(lines) == 1 and lines[0].startswith("error: model "), result.stderr
        assert " on dataset " in lines[0]
        assert not run_dir.exists()
        return

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert rows and all(math.isfinite(float(rows[-1][key])) for key in ("train_loss", "valid_loss"))
    trained = build_model(load_checkpoint(run_dir / "checkpoints" / "last.pt"))
    track = _first_test_track(dataset)
    assert type(trained).__module__.startswith("sepkit.models.")
    assert trained.targets == list(track.sources)

    mixture, _ = read_track(track, nb_channels=trained.nb_channels)
    song = tmp_path / f"{track.name}.wav"
    soundfile.write(song, mixture.T.numpy(), trained.sample_rate)
    checkpoint = f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}"
    out = tmp_path / "separated"
    assert (
        _sepkit_here(
            "separate", str(song), checkpoint, f"out_dir={out}", "name=m", "progress=false"
        )
        == 0
    )
    for target in trained.targets:
        assert soundfile.info(out / "m" / track.name / f"{target}.wav").frames == mixture.shape[-1]

    evaluation = tmp_path / "eval"
    status = _sepkit_here(
        "eval", checkpoint, *DATASETS[dataset], f"tracks=[{track.name}]",
        f"out_dir={evaluation}", "progress=false",
    )  # fmt: skip
    assert status == 0
    assert [row["track"] for row in csv.DictReader((evaluation / "results.csv").open())]


def test_a_permutation_invariant_loss_on_named_stems_is_refused_before_any_run(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_sepkit(
        "train", "model=convtasnet", "loss=pit_si_sdr", *DATASETS["toy"], *ONE_STEP,
        *SMALL_MODELS["convtasnet"], f"hydra.run.dir={run_dir}",
    )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: model ConvTasNet on dataset ToyMUSDB")
    assert "PermutationInvariantLoss" in line and "named stems" in line
    assert not run_dir.exists()


def test_pit_when_unordered_permutes_speakers_and_keeps_named_stems_in_place():
    torch.manual_seed(0)
    references = {"waveforms": torch.randn(3, 2, 1, 400)}
    swapped = {"waveforms": references["waveforms"].flip(1) + 0.01 * torch.randn(3, 2, 1, 400)}
    auto = PermutationInvariantLoss(ScaleInvariantSDRLoss(), when="unordered")
    auto.fit_sources(ordered=False)
    assert auto(swapped, references) < -30  # the swap is undone: about 40 dB
    auto.fit_sources(ordered=True)
    torch.testing.assert_close(
        auto(swapped, references), ScaleInvariantSDRLoss()(swapped, references)
    )
    with pytest.raises(ValueError, match="named stems"):
        PermutationInvariantLoss(ScaleInvariantSDRLoss()).fit_sources(ordered=True)
    with pytest.raises(ValueError, match="no order"):
        ScaleInvariantSDRLoss().fit_sources(ordered=False)


def _composed_train(*overrides: str):
    register_schemas()
    _register_resolvers()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("model", MODELS)
def test_a_music_set_trains_on_the_models_segment_and_a_set_segment_wins(model: str):
    """The music sets leave the excerpt length to the model (its ``training_segment``: the
    paper's), the speech sets keep their own; ``dataset.segment=`` wins over both."""
    toy = [option for option in DATASETS["toy"] if not option.startswith("dataset.segment")]
    music = _composed_train(f"model={model}", *toy)
    assert music.dataset.segment is None
    built = instantiate(music.model, _convert_="all")
    data = instantiate(music.dataset, _convert_="all")
    items = data.training_set(built.training_segment)
    assert items[0][0].shape[-1] == round(built.training_segment * data.sample_rate)
    data.segment = 0.25
    assert data.training_set(built.training_segment)[0][0].shape[-1] == round(
        0.25 * data.sample_rate
    )
    speech = _composed_train(f"model={model}", "dataset=toy_speech")
    assert speech.dataset.segment == 2.0


def test_a_model_config_sets_the_batch_size_and_a_trainer_option_or_override_wins():
    assert _composed_train("model=demucs").trainer.batch_size == 2
    assert _composed_train("model=openunmix").trainer.batch_size == 16
    assert _composed_train("model=demucs", "trainer=cpu_demo").trainer.batch_size == 8
    assert _composed_train("model=demucs", "trainer.batch_size=3").trainer.batch_size == 3

"""Fine-tuning: ``init=`` starts a run from trained weights, ``freeze=`` keeps some fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sepkit.checkpoint import load_checkpoint
from sepkit.errors import SepkitError
from sepkit.train.finetune import freeze
from tests.conftest import TINY_TOY, TINY_TRAINER, TINY_TRAINING, run_sepkit
from tests.helpers import tiny_model

ONE_STEP = ["trainer.epochs=1", "trainer.steps_per_epoch=1"]


def _train(run_dir: Path, *extra: str, check: bool = True):
    return run_sepkit("train", *TINY_TRAINING, f"hydra.run.dir={run_dir}", *extra, check=check)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]["state_dict"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    _train(run_dir, *ONE_STEP, "trainer.seed=1")
    return run_dir


def test_init_starts_from_the_trained_weights_and_one_step_moves_them(trained, tmp_path):
    tuned = tmp_path / "tuned"
    _train(tuned, *ONE_STEP, f"init={trained}", "optimizer.lr=0.01")
    before, after = _weights(trained), _weights(tuned)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed, "one step changed no weight"
    # a step of lr 0.01 from the trained weights stays near them; a fresh start would not
    name = "target_models.vocals.fc1.weight"
    assert torch.allclose(before[name], after[name], atol=0.05), name

    stems = tmp_path / "stems"
    song = next((Path(p) for p in _toy_song()), None)
    run_sepkit("separate", str(song), f"checkpoint={tuned}", f"out_dir={stems}", check=True)
    assert sorted(p.stem for p in stems.rglob("*.wav")) == sorted(
        ["bass", "drums", "other", "vocals"]
    )


def _toy_song() -> list[str]:
    from sepkit.data.toy import ToyMUSDB

    return [str(ToyMUSDB(nb_train_tracks=4, nb_test_tracks=2, train_duration=4.0,
                         test_duration=3.0).test_tracks()[0].mixture)]  # fmt: skip


def test_freeze_keeps_the_matched_weights_exactly(trained, tmp_path):
    tuned = tmp_path / "frozen"
    _train(tuned, *ONE_STEP, f"init={trained}", "freeze=[target_models.vocals.*]")
    before, after = _weights(trained), _weights(tuned)
    # batch norm's running statistics are buffers, not parameters: they keep updating
    buffers = ("running_", "num_batches_tracked")
    frozen = [
        n for n in before
        if n.startswith("target_models.vocals.") and not any(b in n for b in buffers)
    ]  # fmt: skip
    assert len(frozen) > 5, frozen
    for name in frozen:
        assert torch.equal(before[name], after[name]), name
    assert any(
        not torch.equal(before[n], after[n]) for n in before if n.startswith("target_models.bass.")
    )


def test_init_with_another_architecture_names_the_settings_to_add(trained, tmp_path):
    result = _train(tmp_path / "other", *ONE_STEP, f"init={trained}", "model.hidden_size=8",
                    check=False)  # fmt: skip
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "model.hidden_size=16" in errors[0], result.stderr
    assert not (tmp_path / "other" / "checkpoints").exists()


def test_init_of_an_unknown_name_is_one_line_naming_the_key(tmp_path):
    result = _train(tmp_path / "unknown", *ONE_STEP, "init=no_such_model", check=False)
    assert result.returncode == 2
    assert "init=no_such_model: unknown model" in result.stderr


def test_a_freeze_pattern_that_matches_nothing_lists_the_parameter_names():
    model = tiny_model()
    with pytest.raises(SepkitError, match=r"freeze=encoder\.\*: no parameter .* target_models"):
        freeze(model, ["encoder.*"])
    frozen = freeze(model, ["target_models.bass.*"])
    assert frozen and all(not p.requires_grad for n, p in model.named_parameters() if n in frozen)
    with pytest.raises(SepkitError, match="every parameter is frozen"):
        freeze(tiny_model(), ["*"])


@pytest.mark.slow
def test_fine_tuning_published_htdemucs_weights_one_step(tmp_path, monkeypatch):
    """init=htdemucs: demucs 4.1.0's package of an HTDemucs in the shape configs/model/
    htdemucs.yaml builds (random weights) in the hub cache, one step on the toy set."""
    import importlib

    from omegaconf import OmegaConf

    from sepkit.models.pretrained.demucs4 import DEMUCS4
    from tests.references import reference_folder

    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    with reference_folder("demucs4", "demucs", "einops"):
        htdemucs = importlib.import_module("demucs.htdemucs")
        states = importlib.import_module("demucs.states")
        torch.manual_seed(0)
        reference = htdemucs.HTDemucs(
            sources=["drums", "bass", "other", "vocals"], dconv_mode=3, bottom_channels=512
        )
        package = states.serialize_model(reference, OmegaConf.create({"model": "htdemucs"}))
        # inside the folder's import context: pickle names the class by its import path
        torch.save(package, checkpoints / DEMUCS4["htdemucs"].files[0])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    run_dir = tmp_path / "tuned"
    common = [*TINY_TOY, *TINY_TRAINER, "model=htdemucs", f"hydra.run.dir={run_dir}"]
    refused = run_sepkit("train", *common, *ONE_STEP, "init=htdemucs", check=False)
    assert refused.returncode == 2
    assert "add dataset.targets=[drums,bass,other,vocals]" in refused.stderr, refused.stderr
    order = "dataset.targets=[drums,bass,other,vocals]"
    run_sepkit("train", *common, *ONE_STEP, "init=htdemucs", order, check=True)
    published = {k: v.float() for k, v in package["state"].items()}
    tuned = _weights(run_dir)
    changed = [name for name in published if not torch.equal(published[name], tuned[name])]
    assert changed, "one step changed no weight"
    for name, value in published.items():
        assert torch.allclose(value, tuned[name], atol=1e-2), name  # one small step away

    song = _toy_song()[0]
    stems = tmp_path / "stems"
    run_sepkit("separate", song, f"checkpoint={run_dir}", f"out_dir={stems}", check=True)
    assert sorted(p.stem for p in stems.rglob("*.wav")) == ["bass", "drums", "other", "vocals"]

"""Training end to end through the CLI: run directory, resume, rebuild, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from sepkit.checkpoint import build_model, load_checkpoint
from tests.conftest import TINY_TRAINING, run_sepkit


def _train(run_dir: Path, *extra: str, check: bool = True):
    return run_sepkit("train", *TINY_TRAINING, f"hydra.run.dir={run_dir}", *extra, check=check)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "two"
    _train(run_dir, "trainer.epochs=2")
    return run_dir


def test_run_directory_holds_what_the_design_promises(two_epochs: Path):
    for name in (
        ".hydra/config.yaml",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "metrics.csv",
        "loss.png",
    ):
        assert (two_epochs / name).is_file(), name
    assert list((two_epochs / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((two_epochs / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert all(float(row["valid_loss"]) > 0 for row in rows)
    assert (two_epochs / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_checkpoint_is_one_safe_file_that_rebuilds_its_model(two_epochs: Path):
    checkpoint = load_checkpoint(two_epochs / "checkpoints" / "best.pt")
    assert checkpoint["sepkit_version"]
    assert checkpoint["model"]["config"]["_target_"].startswith("sepkit.models.")
    assert checkpoint["statistics"]["mean"].ndim == 1
    model = build_model(checkpoint)
    assert model.config == checkpoint["model"]["config"]
    for key, value in checkpoint["model"]["state_dict"].items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():
        waveforms = model.separate(torch.randn(1, 2, 8000))
    assert waveforms.shape == (1, 4, 2, 8000)


def test_two_epochs_and_a_resumed_third_equal_three_straight(two_epochs: Path, tmp_path: Path):
    import shutil

    resumed = tmp_path / "resumed"
    shutil.copytree(two_epochs, resumed)
    run_sepkit("train", f"resume={resumed}", "trainer.epochs=3", check=True)
    straight = tmp_path / "straight"
    _train(straight, "trainer.epochs=3")

    resumed_state = load_checkpoint(resumed / "checkpoints" / "last.pt")
    straight_state = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert resumed_state["train_state"]["state"]["epoch"] == 3
    for key, value in straight_state["model"]["state_dict"].items():
        torch.testing.assert_close(resumed_state["model"]["state_dict"][key], value, rtol=0, atol=0)
    resumed_rows = list(csv.DictReader((resumed / "metrics.csv").open()))
    straight_rows = list(csv.DictReader((straight / "metrics.csv").open()))
    assert [r["valid_loss"] for r in resumed_rows] == [r["valid_loss"] for r in straight_rows]


def test_an_existing_run_is_not_overwritten_without_resume(two_epochs: Path):
    before = (two_epochs / "checkpoints" / "last.pt").read_bytes()
    result = _train(two_epochs, "trainer.epochs=1", check=False)
    assert result.returncode == 2
    assert "resume=" in result.stderr
    assert (two_epochs / "checkpoints" / "last.pt").read_bytes() == before


def test_missing_dataset_root_fails_with_one_line_naming_it(tmp_path: Path):
    missing = tmp_path / "no-such-musdb"
    run_dir = tmp_path / "run"
    result = run_sepkit(
        "train", "dataset=musdb", f"dataset.root={missing}", f"hydra.run.dir={run_dir}"
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and str(missing) in errors[0], result.stderr
    assert not run_dir.exists()


def test_a_loss_that_does_not_fit_the_model_is_refused(tmp_path: Path):
    # a stored run's model with a loss reading outputs the model does not give
    from sepkit.losses.base import SeparationLoss
    from sepkit.models.openunmix import OpenUnmixSeparator
    from sepkit.train import check_compatible

    class ReadsWaveforms(SeparationLoss):
        reads = ("waveforms",)

        def forward(self, outputs, references):
            return outputs["waveforms"].sum()

    class Data:
        targets, sample_rate, nb_channels = ["vocals"], 44100, 2

    from sepkit.errors import SepkitError

    with pytest.raises(SepkitError, match="reads \\['waveforms'\\]"):
        check_compatible(OpenUnmixSeparator(["vocals"], hidden_size=8), Data(), ReadsWaveforms())


def test_mixed_precision_trains_on_cpu_with_bfloat16(tmp_path: Path):
    run_dir = tmp_path / "amp"
    _train(run_dir, "trainer.epochs=1", "trainer.amp=true")
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert float(rows[0]["train_loss"]) > 0 and float(rows[0]["valid_loss"]) > 0


def test_private_set_in_musdb_layout_trains_with_held_out_validation(tmp_path: Path):
    """`dataset=musdb dataset.is_wav=true` on a folder whose track names are not MUSDB18's."""
    from sepkit.data.toy import generate_toy_musdb

    root = tmp_path / "private"
    generate_toy_musdb(
        root, seed=3, nb_train_tracks=3, nb_test_tracks=1, train_duration=3.0, test_duration=2.0
    )
    run_dir = tmp_path / "run"
    run_sepkit(
        "train",
        "model=openunmix",
        "dataset=musdb",
        f"dataset.root={root}",
        "dataset.is_wav=true",
        "dataset.segment=1.0",
        "dataset.samples_per_track=2",
        "dataset.valid_fraction=0.34",
        "trainer.epochs=1",
        *[o for o in TINY_TRAINING if not o.startswith("dataset.")],
        f"hydra.run.dir={run_dir}",
        check=True,
    )
    assert (run_dir / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
def test_torchrun_with_two_processes_writes_one_run_directory(tmp_path: Path):
    """DDP on CPU (gloo): both ranks train, rank 0 writes, and the run directory named by
    time is the same for both processes."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPOSITORY

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "sepkit",
            "train",
            *TINY_TRAINING,
            "trainer.epochs=2",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [path.parent for path in (tmp_path / "runs").rglob(".hydra")]
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [1, 2]


def test_a_slurm_task_started_by_submitit_finds_its_rank(monkeypatch: pytest.MonkeyPatch):
    from sepkit.train import Distributed

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        # set, then delete: monkeypatch restores only variables it saw, and submitit's
        # export sets these; left behind, the next test's sepkit waits for a torchrun peer
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    slurm = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_NTASKS": "8",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_PROCID": "5",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08]",
    }
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    distributed = Distributed.from_environment()
    assert (distributed.rank, distributed.world_size, distributed.local_rank) == (5, 8, 1)
    import os

    assert os.environ["MASTER_ADDR"] == "gpu07"


def test_the_slurm_launcher_config_composes(tmp_path: Path):
    result = run_sepkit(
        "train",
        "hydra/launcher=slurm_ddp",
        "hydra.launcher.nodes=2",
        "--cfg",
        "hydra",
        cwd=tmp_path,
        check=True,
    )
    assert "SlurmLauncher" in result.stdout
    assert "nodes: 2" in result.stdout

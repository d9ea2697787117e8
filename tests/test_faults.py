"""Training survives interruptions: signals save the position, kills lose at most the
current epoch, and every resumed run ends with the weights of an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sepkit.checkpoint import load_checkpoint
from tests.conftest import REPOSITORY, TEST_THREADS, TINY_TRAINING, run_sepkit

SETTINGS = [*TINY_TRAINING, "trainer.epochs=4", "trainer.steps_per_epoch=6"]


def _start(run_dir: Path, *arguments: str) -> subprocess.Popen:
    if (run_dir / ".hydra" / "overrides.yaml").is_file():
        arguments = (f"resume={run_dir}",)  # what a user types to continue
    else:
        arguments = (*SETTINGS, f"hydra.run.dir={run_dir}", *arguments)
    return subprocess.Popen(
        [sys.executable, "-m", "sepkit", "train", *arguments],
        env={**os.environ, "PYTHONPATH": str(REPOSITORY), "OMP_NUM_THREADS": str(TEST_THREADS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]["state_dict"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    run_sepkit("train", *SETTINGS, f"hydra.run.dir={run_dir}", check=True)
    return _weights(run_dir)


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_the_position_and_resume_finishes_identically(
    tmp_path: Path, uninterrupted
):
    run_dir = tmp_path / "run"
    process = _start(run_dir)
    _wait_for(run_dir / "checkpoints" / "last.pt", process)  # epoch 1 is done
    time.sleep(0.3)  # somewhere inside epoch 2
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert f"resume={run_dir}" in stderr
    assert "Traceback" not in stderr
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")["train_state"]["state"]
    assert saved["epoch"] >= 1

    resumed = _start(run_dir)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    _assert_same_weights(_weights(run_dir), uninterrupted)


@pytest.mark.slow
def test_five_kills_at_random_moments_then_resume_give_the_uninterrupted_weights(
    tmp_path: Path, uninterrupted
):
    run_dir = tmp_path / "run"
    chance = random.Random(os.environ.get("SEPKIT_TEST_SEED", "7"))
    for _ in range(5):
        process = _start(run_dir)
        time.sleep(chance.uniform(3.0, 12.0))
        process.kill()  # SIGKILL: no handler runs
        process.communicate()
        last = run_dir / "checkpoints" / "last.pt"
        if last.exists():
            load_checkpoint(last)  # whatever the moment, the file on disk is complete
    final = _start(run_dir)
    _, stderr = final.communicate(timeout=600)
    assert final.returncode == 0, stderr
    _assert_same_weights(_weights(run_dir), uninterrupted)
    # files a kill left half-written were cleared away on resume
    assert not [p.name for p in (run_dir / "checkpoints").iterdir() if "partial" in p.name]


def test_non_finite_losses_are_skipped_then_stop_the_run_with_a_clear_error(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = run_sepkit(
        "train",
        *TINY_TRAINING,
        "trainer.epochs=1",
        "optimizer.lr=1e30",  # the first step's update makes every later loss NaN
        "trainer.max_nonfinite_steps=1",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 2
    assert "not finite for 1 steps in a row" in result.stderr
    assert "skipped" in result.stdout + result.stderr

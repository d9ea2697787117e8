"""Shared test set-up: a private cache, small model and data settings, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent

# Settings that make the default Open-Unmix and toy set small enough for a test.
TINY_MODEL = [
    "model.hidden_size=16",
    "model.nb_layers=1",
    "model.n_fft=512",
    "model.hop_length=128",
    "model.bandwidth=null",
]
TINY_TOY = [
    "dataset.nb_train_tracks=4",
    "dataset.nb_test_tracks=2",
    "dataset.train_duration=4.0",
    "dataset.test_duration=3.0",
    "dataset.segment=1.0",
    "dataset.samples_per_track=2",
    "dataset.valid_fraction=0.25",
]
TINY_TRAINER = [
    "trainer.batch_size=2",
    "trainer.steps_per_epoch=2",
    "trainer.device=cpu",
    "trainer.progress=false",
    "trainer.patience=null",
]
TINY_TRAINING = [*TINY_MODEL, *TINY_TOY, *TINY_TRAINER]

# `make test` runs two pytest workers (pytest-xdist) on a two-core machine: each test and
# each sepkit it starts then takes one torch thread, so the two never fight over the cores.
TEST_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated toy sets and statistics go to a folder of this test session only."""
    cache = tmp_path_factory.mktemp("sepkit-cache")
    os.environ["SEPKIT_CACHE"] = str(cache)
    os.environ.pop("MUSDB_PATH", None)
    import torch

    torch.set_num_threads(TEST_THREADS)
    return cache


@pytest.fixture
def without_torchaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    """openunmix imports torchaudio at the top of two modules whose model and filtering
    code never use it, and torchaudio has no CPU wheel for this torch. An empty module
    stands in for the import only."""
    monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))


def run_sepkit(*arguments: str, cwd: Path | None = None, check: bool = False, timeout: int = 600):
    """Run the ``sepkit`` command in a fresh interpreter, as a user would."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY),
        "OMP_NUM_THREADS": str(TEST_THREADS),
    }
    result = subprocess.run(
        [sys.executable, "-m", "sepkit", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"sepkit {' '.join(arguments)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result

"""The waveform family's recipes run end to end in their --smoke mode (a training step on
generated audio), as a user runs them: the shell scripts over the sepkit command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sepkit.checkpoint import build_model, load_checkpoint
from tests.conftest import REPOSITORY, TEST_THREADS

RECIPES = [
    "musdb18/demucs.sh",
    "musdb18/convtasnet.sh",
    "musdb18/waveunet.sh",
    "musdb18/htdemucs.sh",
    "musdb18/bs_roformer.sh",
    "musdb18/mel_roformer.sh",
    "wsj0-2mix/tasnet.sh",
    "wsj0-2mix/convtasnet.sh",
]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_smoke_run_trains_and_leaves_a_checkpoint(recipe, tmp_path: Path):
    run_dir = tmp_path / "run"
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY),
        "SEPKIT": f"{sys.executable} -m sepkit",
        "OMP_NUM_THREADS": str(TEST_THREADS),
    }
    result = subprocess.run(
        ["bash", str(REPOSITORY / "recipes" / recipe), "--smoke", f"hydra.run.dir={run_dir}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    model = build_model(load_checkpoint(run_dir / "checkpoints" / "best.pt"))
    expected = "wsj0-2mix" in recipe and ["s1", "s2"] or ["vocals", "drums", "bass", "other"]
    assert model.targets == expected

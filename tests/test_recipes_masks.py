"""The mask-family recipes' smoke mode, as CI runs it: each script trains its tiny toy run
through the CLI; the checkpoint then rebuilds from its stored config and separates an audio
file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from sepkit.checkpoint import build_model, load_checkpoint
from tests.conftest import REPOSITORY, TEST_THREADS

RECIPES = [
    "wsj0-2mix/mask_inference.sh",
    "wsj0-2mix/deep_clustering.sh",
    "wsj0-2mix/chimera.sh",
    "musdb18/unet.sh",
]


def _run_recipe(script: str, run_dir: Path) -> subprocess.CompletedProcess:
    environment = {
        **os.environ,
        "SEPKIT": f"{sys.executable} -m sepkit",
        "PYTHONPATH": str(REPOSITORY),
        "OMP_NUM_THREADS": str(TEST_THREADS),
    }
    return subprocess.run(
        ["bash", str(REPOSITORY / "recipes" / script), "--smoke", f"hydra.run.dir={run_dir}"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("script", RECIPES)
def test_smoke_run_trains_and_its_checkpoint_separates_a_file(script: str, tmp_path: Path):
    run_dir = tmp_path / "run"
    result = _run_recipe(script, run_dir)
    assert result.returncode == 0, f"{script} --smoke failed:\n{result.stdout}\n{result.stderr}"

    assert (run_dir / "metrics.csv").is_file()
    # the checkpoint rebuilds from its stored config and separates a file of odd length
    # (sepkit separate's CLI takes over this step once it lands)
    model = build_model(load_checkpoint(run_dir / "checkpoints" / "best.pt"))
    length = model.sample_rate + 1
    time = np.arange(length) / model.sample_rate
    audio = np.stack(
        [np.sin(2 * np.pi * 220 * (channel + 1) * time) for channel in range(model.nb_channels)]
    )
    audio += 0.1 * np.random.default_rng(0).standard_normal(audio.shape)
    soundfile.write(tmp_path / "mixture.wav", (0.3 * audio).T, model.sample_rate, subtype="FLOAT")
    samples, rate = soundfile.read(tmp_path / "mixture.wav", dtype="float32", always_2d=True)
    with torch.no_grad():
        separated = model.separate(torch.from_numpy(samples.T).unsqueeze(0))
    assert rate == model.sample_rate
    assert separated.shape == (1, len(model.targets), model.nb_channels, length)
    assert torch.isfinite(separated).all()

"""A non-editable install carries its configs (sepkit.configs) and runs from anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPOSITORY


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(
        tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(path.parent.relative_to(REPOSITORY).parts)
        for path in (REPOSITORY / "sepkit").rglob("__init__.py")
    }
    assert found | {"sepkit.configs"} == listed


@pytest.mark.slow
def test_wheel_holds_the_configs_and_composes_outside_the_repository(tmp_path: Path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPOSITORY),
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("sepkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for config in ("train.yaml", "model/openunmix.yaml", "dataset/toy.yaml"):
        assert f"sepkit/configs/{config}" in names

    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "sepkit", "train", "--cfg", "job", "model.hidden_size=32"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "hidden_size: 32" in result.stdout
    assert "sepkit.models.openunmix.OpenUnmixSeparator" in result.stdout


def test_public_names_of_models_losses_and_blocks_resolve():
    import sepkit.blocks
    import sepkit.losses
    import sepkit.metrics
    import sepkit.models

    for package in (sepkit.models, sepkit.losses, sepkit.blocks, sepkit.metrics):
        for name in package.__all__:
            exported = getattr(package, name)
            assert getattr(exported, "__name__", name) == name, (package.__name__, name)
    from sepkit.models import ConvTasNet, Demucs, OpenUnmix

    assert {OpenUnmix.__module__, Demucs.__module__, ConvTasNet.__module__} == {
        "sepkit.models.openunmix",
        "sepkit.models.demucs",
        "sepkit.models.convtasnet",
    }


def test_eval_hands_out_tracks_without_importing_torch():
    # scoring stems on disk needs no torch (importing it takes seconds): the command line,
    # configs, datasets and evaluation plan must not import it themselves
    code = (
        "import sys\n"
        "import sepkit.cli, sepkit.config, sepkit.data, sepkit.evaluate.run\n"
        "from sepkit.metrics import MUSDB_TARGET_SOURCES\n"
        "from sepkit.config import COMMAND_GROUPS, register_schemas\n"
        "register_schemas(COMMAND_GROUPS['eval'])\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPOSITORY
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

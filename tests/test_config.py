"""The config tree: every option composes, and bad overrides fail while composing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sepkit.config import config_dir, register_schemas
from tests.conftest import run_sepkit

GROUPS = ("model", "loss", "dataset", "optimizer", "scheduler", "trainer", "experiment")
# the groups whose options are checked for restated constructor defaults
SCHEMA_GROUPS = ("dataset", "optimizer", "scheduler")


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))


def _compose(overrides: list[str], config_name: str = "train"):
    from sepkit.cli import _register_resolvers

    register_schemas()
    _register_resolvers()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose(config_name, overrides=overrides)


def test_the_issue_keys_exist_with_their_names():
    cfg = _compose([])
    for key in (
        "dataset.root",
        "dataset.targets",
        "dataset.segment",
        "trainer.epochs",
        "trainer.batch_size",
        "trainer.steps_per_epoch",
        "trainer.device",
        "trainer.amp",
        "trainer.seed",
        "trainer.num_workers",
        "trainer.grad_clip",
        "trainer.patience",
        "optimizer.lr",
        "resume",
    ):
        assert OmegaConf.select(cfg, key, default="absent") != "absent", key


@pytest.mark.parametrize(
    "group,option", [(group, option) for group in GROUPS for option in _options(group)]
)
def test_every_option_of_every_group_composes_and_resolves(group, option):
    cfg = _compose([f"{group}={option}"])
    container = OmegaConf.to_container(cfg, resolve=True)
    if group != "experiment":
        assert container[group] is not None
    for name in ("model", "loss", "dataset", "optimizer"):
        assert container[name]["_target_"]


@pytest.mark.parametrize(
    "override",
    [
        "model=nonexistent",
        "optimizer.lr=abc",
        "trainer.epoch=3",
        "model.hiden_size=8",
        "trainer.batch_size=1.5",
        "dataset.segment=long",
    ],
)
def test_bad_override_fails_while_composing(override):
    with pytest.raises((ConfigCompositionException, OmegaConfBaseException)):
        OmegaConf.to_container(_compose([override]), resolve=True)


@pytest.mark.parametrize("override", ["model=nonexistent", "optimizer.lr=abc", "trainer.epoch=3"])
def test_bad_override_on_the_command_line_makes_no_run_directory(tmp_path: Path, override):
    run_dir = tmp_path / "run"
    result = run_sepkit("train", override, f"hydra.run.dir={run_dir}")
    assert result.returncode != 0
    assert not run_dir.exists()
    message = result.stderr + result.stdout
    assert override.split("=")[0].split(".")[-1] in message or "nonexistent" in message


def test_help_lists_the_config_groups():
    result = run_sepkit("train", "--help", check=True)
    for group in GROUPS:
        assert f"\n{group}: " in result.stdout, group
    assert "openunmix" in result.stdout


def test_cfg_job_prints_the_resolved_config_without_running(tmp_path: Path):
    result = run_sepkit("train", "--cfg", "job", "optimizer.lr=0.01", cwd=tmp_path, check=True)
    assert "lr: 0.01" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_tab_completion_offers_the_options_of_a_group():
    import os

    line = "sepkit train model="
    os.environ["COMP_LINE"], os.environ["COMP_POINT"] = line, str(len(line))
    try:
        result = run_sepkit("train", "-sc", "query=bash", check=True)
    finally:
        del os.environ["COMP_LINE"], os.environ["COMP_POINT"]
    assert "model=openunmix" in result.stdout.split()


def _restated_defaults(content: dict, defaults: dict, prefix: str = "") -> list[str]:
    """Keys of ``content`` whose value is the schema's default (interpolations aside)."""
    restated = []
    for key, value in content.items():
        if key in ("defaults", "_target_", "_partial_", "hydra") or key not in defaults:
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            restated += _restated_defaults(value, defaults[key], f"{prefix}{key}.")
        elif not (isinstance(value, str) and "${" in value) and value == defaults[key]:
            restated.append(f"{prefix}{key}")
    return restated


@pytest.mark.parametrize(
    "path",
    [
        *(f"{group}/{option}.yaml" for group in SCHEMA_GROUPS for option in _options(group)),
        "trainer/default.yaml",
        "trainer/cpu_demo.yaml",
        "train.yaml",
        "separate.yaml",
        "eval.yaml",
    ],
)
def test_configs_hold_only_what_differs_from_the_defaults(path: str):
    import yaml

    from sepkit.config import EvalConfig, SeparateConfig, TrainConfig, schema_from_signature

    content = yaml.safe_load((config_dir() / path).read_text()) or {}
    if path.startswith("trainer/"):
        schema = TrainConfig().trainer
    elif "/" in path:
        schema = schema_from_signature(content["_target_"])
    else:
        schema = {"train.yaml": TrainConfig, "separate.yaml": SeparateConfig}.get(path, EvalConfig)
    defaults = OmegaConf.to_container(OmegaConf.structured(schema), enum_to_str=True)
    assert _restated_defaults(content, defaults) == []


def test_a_sequence_argument_is_a_list_of_its_type_in_the_schema():
    # Sequence[int] and tuple[int, ...] (band and window sizes) take a list of int from YAML
    import dataclasses

    from sepkit.config import schema_from_signature

    schema = schema_from_signature("sepkit.losses.multi_resolution.MultiResolutionSTFTLoss")
    fields = {field.name: field for field in dataclasses.fields(schema)}
    assert fields["window_sizes"].type == list[int]
    assert fields["window_sizes"].default_factory() == [4096, 2048, 1024, 512, 256]

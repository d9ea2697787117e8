"""Training options users expect from other trainers: a wall-clock budget
(``trainer.max_time``), gradient accumulation (``trainer.accumulate``), an exponential moving
average of the weights (``trainer.ema``) and per-epoch progress lines in log files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from sepkit.checkpoint import load_checkpoint
from sepkit.errors import SepkitError
from sepkit.train.processes import parse_duration
from tests.conftest import TINY_TRAINING, run_sepkit


def _train(run_dir: Path, *extra: str, check: bool = True):
    return run_sepkit("train", *TINY_TRAINING, f"hydra.run.dir={run_dir}", *extra, check=check)


def _weights(run_dir: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / name)["model"]["state_dict"]


# -- trainer.max_time ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("2.5m", 150), (45, 45),
     ("45", 45), (1.5, 1.5), (None, None)],
)  # fmt: skip
def test_max_time_reads_hours_minutes_and_seconds(value, seconds):
    assert parse_duration(value, "trainer.max_time") == seconds


@pytest.mark.parametrize("value", ["abc", "", "0", "-5", "10 minutes", "1x", "inf", "h"])
def test_a_bad_max_time_is_one_line_naming_the_key_and_the_forms(value):
    with pytest.raises(SepkitError) as error:
        parse_duration(value, "trainer.max_time")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("trainer.max_time=") and '"1h30m"' in message


def test_the_command_refuses_a_bad_max_time_in_one_line(tmp_path: Path):
    result = _train(tmp_path / "run", "trainer.max_time=soon", check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "trainer.max_time=soon" in errors[0], result.stderr


def test_max_time_stops_after_a_step_with_last_pt_and_resume_finishes_the_run(tmp_path: Path):
    steps = ["trainer.epochs=1", "trainer.steps_per_epoch=60"]
    stopped = tmp_path / "stopped"
    result = _train(stopped, *steps, "trainer.max_time=1s")
    assert "time budget trainer.max_time=1s reached" in result.stdout + result.stderr
    state = load_checkpoint(stopped / "checkpoints" / "last.pt")["train_state"]["state"]
    assert state["epoch"] == 0 and 0 < state["step"] < 60, state
    assert not (stopped / "checkpoints" / "best.pt").exists()  # no epoch was validated

    run_sepkit("train", f"resume={stopped}", "trainer.max_time=null", check=True)
    straight = tmp_path / "straight"
    _train(straight, *steps)
    assert (
        load_checkpoint(stopped / "checkpoints" / "last.pt")["train_state"]["state"]["epoch"] == 1
    )
    resumed_weights, straight_weights = _weights(stopped), _weights(straight)
    for name, value in straight_weights.items():
        torch.testing.assert_close(resumed_weights[name], value, rtol=0, atol=0)
    rows = list(csv.DictReader((stopped / "metrics.csv").open()))
    assert [int(row["epoch"]) for row in rows] == [1]

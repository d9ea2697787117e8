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


@pytest.mark.slow
def test_max_time_stops_after_a_step_with_last_pt_and_resume_finishes_the_run(tmp_path: Path):
    # 40 steps take a few seconds on two quiet cores; the budget ends the run after one or more
    steps = ["trainer.epochs=1", "trainer.steps_per_epoch=40"]
    stopped = tmp_path / "stopped"
    result = _train(stopped, *steps, "trainer.max_time=0.5s")
    assert "time budget trainer.max_time=0.5s reached" in result.stdout + result.stderr
    state = load_checkpoint(stopped / "checkpoints" / "last.pt")["train_state"]["state"]
    assert state["epoch"] == 0 and 0 < state["step"] < 40, state
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


# -- trainer.accumulate --------------------------------------------------------------------

# Conv-TasNet with global layer norm: nothing in it depends on the other items of a batch
# (without the skip path, as Demucs's; tests/test_convtasnet_skip.py runs the skip path
# under DDP)
SMALL_CONVTASNET = [
    "model=convtasnet", "model.filters=16", "model.bottleneck_channels=8",
    "model.skip_channels=null", "model.hidden_channels=16", "model.layers=2",
    "model.repeats=1", "model.norm=global",
]  # fmt: skip
TINY_TOY = [option for option in TINY_TRAINING if option.startswith("dataset.")]


def _trainer(run_dir: Path, *overrides: str):
    """A Trainer as ``sepkit train <overrides>`` builds it, in this process."""
    from hydra import compose, initialize_config_dir

    from sepkit.cli import _register_resolvers
    from sepkit.config import config_dir, register_schemas
    from sepkit.devices import select_device
    from sepkit.train import Distributed, StopSignals, Trainer

    register_schemas()
    _register_resolvers()
    defaults = ["trainer.device=cpu", "trainer.progress=false", "trainer.patience=null"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*defaults, *overrides])
    return Trainer(cfg, run_dir, Distributed(), select_device("cpu"), StopSignals())


def test_accumulating_two_batches_of_two_equals_one_batch_of_four(tmp_path: Path):
    # SGD, whose step grows with the gradient (Adam's hardly would with a wrongly scaled
    # sum), and a clipping norm too high to hide the gradient's scale
    common = [
        *SMALL_CONVTASNET, *TINY_TOY, "optimizer=sgd", "trainer.grad_clip=100",
        "trainer.epochs=1", "trainer.steps_per_epoch=2",
    ]  # fmt: skip
    accumulated = _trainer(
        tmp_path / "accumulated", *common, "trainer.batch_size=2", "trainer.accumulate=2"
    )
    large = _trainer(tmp_path / "large", *common, "trainer.batch_size=4")
    initial = {name: value.clone() for name, value in large.model.state_dict().items()}
    accumulated.run()
    large.run()
    changed = False
    for name, value in large.model.state_dict().items():
        torch.testing.assert_close(accumulated.model.state_dict()[name], value, rtol=0, atol=1e-5)
        changed = changed or not torch.equal(value, initial[name])
    assert changed  # two optimizer steps were taken
    # the same items: the training loss of the epoch is the same mean
    (row_a,), (row_l,) = accumulated.state.history, large.state.history
    assert row_a["train_loss"] == pytest.approx(row_l["train_loss"], rel=1e-5)


def test_an_epoch_ending_mid_step_closes_a_smaller_step():
    from sepkit.train import EpochSampler

    # 10 items in batches of 4, 4, 2; two batches per optimizer step
    sampler = EpochSampler(10, batch_size=4, seed=0, accumulate=2)
    assert [sampler.ends_step(batch) for batch in range(3)] == [False, True, True]
    assert [sampler.items_in_step(batch) for batch in range(3)] == [8, 8, 2]
    # steps_per_epoch counts optimizer steps
    assert len(EpochSampler(10, batch_size=4, seed=0, steps_per_epoch=3, accumulate=2)) == 24


def test_accumulated_gradients_are_exchanged_only_on_the_step_batch(tmp_path: Path):
    """DDP (one gloo process) wraps the model: its gradient hook runs once per optimizer
    step, on the last of the accumulated batches, and never on the others (no_sync)."""
    import torch.distributed as torch_distributed

    trainer = _trainer(
        tmp_path / "run",
        *SMALL_CONVTASNET,
        *TINY_TOY,
        "trainer.epochs=1",
        "trainer.steps_per_epoch=2",
        "trainer.batch_size=1",
        "trainer.accumulate=3",
    )
    store = torch_distributed.HashStore()
    torch_distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        trainer.network = torch.nn.parallel.DistributedDataParallel(trainer.model)
        exchanges: list[int] = []

        def count(state, bucket):
            exchanges.append(backwards[0])
            future = torch.futures.Future()
            future.set_result(bucket.buffer())
            return future

        trainer.network.register_comm_hook(None, count)
        backwards = [0]
        original = trainer._backward

        def counted(*arguments, **keywords):
            backwards[0] += 1
            return original(*arguments, **keywords)

        trainer._backward = counted
        trainer.loaders.sampler.set_epoch(1)
        assert trainer._train_steps(1, 0.0)
    finally:
        torch_distributed.destroy_process_group()
    assert backwards[0] == 6
    assert sorted(set(exchanges)) == [3, 6]  # only the third and sixth batches exchanged
    assert trainer.state.step == 6 and trainer.state.partial_count == 6


# -- trainer.ema ---------------------------------------------------------------------------

EMA_RUN = [*SMALL_CONVTASNET, *TINY_TOY, "trainer.batch_size=2", "trainer.steps_per_epoch=3"]


def test_the_average_follows_the_weights_of_every_step_and_is_what_best_pt_holds(
    tmp_path: Path,
):
    trainer = _trainer(tmp_path, *EMA_RUN, "trainer.epochs=1", "trainer.ema.decay=0.9")
    trajectory = [[p.detach().clone() for p in trainer.model.parameters()]]
    trainer.optimizer.register_step_post_hook(
        lambda *_: trajectory.append([p.detach().clone() for p in trainer.model.parameters()])
    )
    trainer.run()
    assert len(trajectory) == 4  # the initial weights and three steps
    expected = trajectory[0]
    for weights in trajectory[1:]:
        expected = [0.9 * average + 0.1 * w for average, w in zip(expected, weights)]
    averaged = list(trainer.average.model.parameters())
    for value, hand in zip(averaged, expected, strict=True):
        torch.testing.assert_close(value, hand, rtol=1e-5, atol=1e-7)
    assert not torch.equal(averaged[0], trajectory[-1][0])

    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    names = [name for name, _ in trainer.model.named_parameters()]
    for name, value, raw in zip(names, averaged, trajectory[-1], strict=True):
        torch.testing.assert_close(best["model"]["state_dict"][name], value, rtol=0, atol=0)
        torch.testing.assert_close(last["train_state"]["ema"][name], value, rtol=0, atol=0)
        # last.pt keeps the trained weights, which resume continues from
        torch.testing.assert_close(last["model"]["state_dict"][name], raw, rtol=0, atol=0)


def test_a_resumed_run_continues_the_average_of_the_straight_run(tmp_path: Path):
    ema = ["trainer.ema.decay=0.8", "trainer.ema.use_for_validation=false"]
    straight = _trainer(tmp_path / "straight", *EMA_RUN, *ema, "trainer.epochs=2")
    straight.run()
    first = _trainer(tmp_path / "resumed", *EMA_RUN, *ema, "trainer.epochs=1")
    first.run()
    resumed = _trainer(
        tmp_path / "resumed", *EMA_RUN, *ema, "trainer.epochs=2", f"resume={tmp_path / 'resumed'}"
    )
    resumed.run()
    straight_average = straight.average.state_dict()
    assert not torch.equal(
        next(iter(straight_average.values())), next(iter(straight.model.state_dict().values()))
    )
    for name, value in resumed.average.state_dict().items():
        torch.testing.assert_close(value, straight_average[name], rtol=0, atol=0)
    # without use_for_validation, best.pt holds the trained weights
    best = load_checkpoint(tmp_path / "straight" / "checkpoints" / "best.pt")
    for name, value in straight.model.state_dict().items():
        torch.testing.assert_close(best["model"]["state_dict"][name], value, rtol=0, atol=0)
    assert best["train_state"]["ema"] is not None


# -- progress in a log file ----------------------------------------------------------------


def test_a_log_file_gets_one_line_per_epoch_and_no_bar_updates(tmp_path: Path):
    """``sepkit train > train.log 2>&1``: stderr is no terminal, so no carriage-return bar."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPOSITORY, TEST_THREADS

    log_file = tmp_path / "train.log"
    with log_file.open("w") as output:
        subprocess.run(
            [sys.executable, "-m", "sepkit", "train", *TINY_TRAINING, "trainer.progress=true",
             "trainer.epochs=2", f"hydra.run.dir={tmp_path / 'run'}"],
            stdout=output, stderr=subprocess.STDOUT, check=True, timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPOSITORY),
                 "OMP_NUM_THREADS": str(TEST_THREADS)},
        )  # fmt: skip
    text = log_file.read_text()
    assert "\r" not in text
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], text
    assert all(" train " in line and " valid " in line and line.endswith(" s") for line in epochs)

"""The processes of a training job: this one's place in a torchrun job, and the signals that
ask it to stop."""

from __future__ import annotations

import math
import os
import re
import signal
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_distributed

from sepkit.errors import SepkitError


@dataclass
class Distributed:
    """This process's place in a torchrun job (one process alone: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """From torchrun's variables; in a SLURM job started by hydra-submitit-launcher,
        submitit's own helper first exports them from SLURM's."""
        if "RANK" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            from submitit.helpers import TorchDistributedEnvironment  # only on SLURM

            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        if self.enabled and not torch_distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            torch_distributed.init_process_group(backend=backend)

    def stop(self) -> None:
        if self.enabled and torch_distributed.is_initialized():
            torch_distributed.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            torch_distributed.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all processes."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        torch_distributed.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: int, device: torch.device) -> int:
        """The largest of every process's ``flag`` (0 where none is set): what all processes
        must agree on, or the next collective operation would wait forever."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([flag], dtype=torch.int64, device=device)
        torch_distributed.all_reduce(tensor, op=torch_distributed.ReduceOp.MAX)
        return int(tensor.item())


def derived_seed(*numbers: int) -> int:
    """A 32-bit seed that depends on every number given, for per-step random state."""
    return int(np.random.SeedSequence([abs(int(n)) for n in numbers]).generate_state(1)[0])


class StopSignals:
    """Turns SIGINT and SIGTERM (what schedulers send before preemption) into a flag the
    loop checks between steps, so it can save where it is and stop cleanly."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.received = number

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)


DURATION_FORMS = '"90s", "10m", "2h", "1h30m" or a number of seconds'
_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?)h)?(?:(\d+(?:\.\d*)?)m)?(?:(\d+(?:\.\d*)?)s)?")


def parse_duration(value: Any, key: str) -> float | None:
    """Seconds in ``value`` (None stays None): a number of seconds, or hours, minutes and
    seconds as ``1h30m``, ``10m``, ``90s``; a one-line SepkitError naming ``key`` else."""
    if value is None:
        return None
    text = str(value).strip().lower().replace(" ", "")
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        seconds = math.nan
        if text and match is not None:
            hours, minutes, rest = (float(part or 0) for part in match.groups())
            seconds = 3600 * hours + 60 * minutes + rest
    if not (math.isfinite(seconds) and seconds > 0):
        raise SepkitError(f"{key}={value}: not a positive duration; give {DURATION_FORMS}")
    return seconds

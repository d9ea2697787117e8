"""Conv-TasNet with the paper's skip path trains under DDP: every parameter it creates gets a
gradient (DDP stops at the second step otherwise), and Demucs's skip-less Conv-TasNet keeps
the last block's residual convolution its published weights hold."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from sepkit.models.convtasnet import ConvTasNet

SMALL = {
    "filters": 16, "kernel_size": 8, "bottleneck_channels": 8, "hidden_channels": 16,
    "layers": 2, "repeats": 2,
}  # fmt: skip


def test_with_the_skip_path_every_parameter_gets_a_gradient():
    model = ConvTasNet(["s1", "s2"], skip_channels=8, **SMALL)
    model(torch.randn(2, 1, 400))["waveforms"].square().mean().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    # without the skip path the masks come from the last residual output, which stays
    assert ConvTasNet(["s1", "s2"], skip_channels=None, **SMALL).separator.blocks[-1].residual


def test_the_skip_path_model_takes_two_ddp_steps(tmp_path: Path):
    import torch.distributed as torch_distributed

    from sepkit.cli import _register_resolvers
    from sepkit.config import config_dir, register_schemas
    from sepkit.devices import select_device
    from sepkit.train import Distributed, StopSignals, Trainer

    register_schemas()
    _register_resolvers()
    overrides = [
        "model=convtasnet", *[f"model.{key}={value}" for key, value in SMALL.items()],
        "model.skip_channels=8", "dataset=toy", "dataset.nb_train_tracks=2",
        "dataset.nb_test_tracks=1", "dataset.train_duration=2.0", "dataset.test_duration=1.0",
        "dataset.segment=0.25", "dataset.samples_per_track=2", "dataset.valid_fraction=0.5",
        "trainer.device=cpu", "trainer.progress=false", "trainer.epochs=1",
        "trainer.steps_per_epoch=2", "trainer.batch_size=1",
    ]  # fmt: skip
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    trainer = Trainer(cfg, tmp_path, Distributed(), select_device("cpu"), StopSignals())
    before = [p.detach().clone() for p in trainer.model.parameters()]
    torch_distributed.init_process_group(
        "gloo", store=torch_distributed.HashStore(), rank=0, world_size=1
    )
    try:
        trainer.network = torch.nn.parallel.DistributedDataParallel(trainer.model)
        trainer.loaders.sampler.set_epoch(1)
        assert trainer._train_steps(1, 0.0)
    finally:
        torch_distributed.destroy_process_group()
    assert trainer.state.step == 2
    after = list(trainer.model.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(after, before))

"""Mask inference, deep clustering and Chimera: outputs, losses that fit them, separation
and checkpoints."""

from __future__ import annotations

import pytest
import torch

from sepkit.checkpoint import build_model
from sepkit.losses.clustering import ChimeraLoss, DeepClusteringLoss, anchor_loss
from sepkit.losses.pit import PermutationInvariantLoss
from sepkit.losses.spectrogram import SpectrogramLoss
from sepkit.models.base import InferenceOptions
from sepkit.models.chimera import Chimera
from sepkit.models.deep_clustering import DeepClustering
from sepkit.models.mask_inference import MaskInference

TINY = dict(targets=["s1", "s2"], n_fft=64, hop_length=16, hidden_size=8, nb_layers=2, dropout=0.3)
MODELS = [MaskInference, DeepClustering, Chimera]
PIT_L1 = PermutationInvariantLoss(SpectrogramLoss("l1", "truncated_phase_sensitive"))
LOSSES = {
    MaskInference: PIT_L1,
    DeepClustering: DeepClusteringLoss(),
    Chimera: ChimeraLoss(PIT_L1, DeepClusteringLoss(), mask_weight=1.0, clustering_weight=1.0),
}


def _model(cls, **overrides):
    torch.manual_seed(0)
    return cls(**{**TINY, **overrides})


@pytest.mark.parametrize("cls", MODELS)
def test_outputs_have_the_documented_shapes_and_the_loss_trains_them(cls):
    model = _model(cls)
    mixture = torch.randn(3, 1, 1000)
    sources = torch.randn(3, 2, 1, 1000)
    outputs = model(mixture)
    assert set(outputs) == set(model.outputs)
    frames = 1000 // 16 + 1
    if "masks" in outputs:
        assert outputs["masks"].shape == (3, 2, 1, 33, frames)
        assert ((outputs["masks"] > 0) & (outputs["masks"] < 1)).all()
        torch.testing.assert_close(
            outputs["magnitudes"], outputs["masks"] * outputs["mixture_spectrogram"].abs()[:, None]
        )
    if "embeddings" in outputs:
        assert outputs["embeddings"].shape == (3, 33 * frames, 20)
        torch.testing.assert_close(outputs["embeddings"].norm(dim=-1), torch.ones(3, 33 * frames))
    loss = LOSSES[cls]
    assert all(name in model.outputs for name in loss.reads)
    value = loss(outputs, model.references(sources, mixture))
    value.backward()
    assert torch.isfinite(value)
    assert all(p.grad is not None for p in model.trunk.parameters() if p.requires_grad)


def test_trunk_is_the_recipe_stack():
    model = MaskInference(targets=["s1", "s2"])
    lstm = model.trunk.recurrent
    assert (lstm.num_layers, lstm.hidden_size, lstm.bidirectional) == (4, 600, True)
    assert lstm.dropout == 0.3  # torch applies it to the outputs of all layers but the last
    assert model.stft.n_fft == 256 and model.stft.hop_length == 64  # 32 ms / 8 ms at 8 kHz
    torch.testing.assert_close(model.stft.window, torch.hann_window(256).sqrt())


@pytest.mark.parametrize("cls", MODELS)
def test_checkpoint_rebuilds_the_same_model_and_separates_an_odd_length(cls):
    model = _model(cls)
    model.train()(torch.randn(2, 1, 800))  # move the batch-norm statistics off their start
    model.eval()
    rebuilt = build_model({"model": {"config": model.config, "state_dict": model.state_dict()}})
    mixture = torch.randn(1, 1, 2001)
    with torch.no_grad():
        for name, value in model(mixture).items():
            torch.testing.assert_close(rebuilt(mixture)[name], value)
        separated = rebuilt.separate(mixture)
        torch.testing.assert_close(separated, model.separate(mixture))
    assert separated.shape == (1, 2, 1, 2001)
    assert torch.isfinite(separated).all()


@pytest.mark.parametrize("mask_type", ["soft", "binary"])
def test_deep_clustering_masks_share_out_the_mixture(mask_type: str):
    model = _model(DeepClustering, mask_type=mask_type).eval()
    mixture = torch.randn(2, 1, 3001)
    with torch.no_grad():
        spectrogram = model.stft(mixture)
        magnitudes = model.separation_magnitudes(spectrogram, InferenceOptions(niter=0))
        separated = model.separate(mixture, InferenceOptions(niter=0))
    # every bin's memberships sum to one, so the estimates add up to the mixture
    torch.testing.assert_close(magnitudes.sum(1), spectrogram.abs(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(separated.sum(1), mixture, rtol=1e-3, atol=1e-4)
    if mask_type == "binary":
        ratios = magnitudes / spectrogram.abs().unsqueeze(1).clamp_min(1e-12)
        assert torch.all((ratios < 1e-4) | (ratios > 1 - 1e-4))


def test_deep_clustering_separation_clusters_the_embeddings_it_was_trained_to_give():
    """A model whose embeddings are the ideal assignments separates the sources."""
    model = _model(DeepClustering, mask_type="binary", cluster_percentile=0.0).eval()
    generator = torch.Generator().manual_seed(0)
    # two sources in disjoint halves of the band: bins below 1 kHz and above
    time = torch.arange(4000) / 8000
    low = sum(torch.sin(2 * torch.pi * f * time) for f in (200.0, 450.0, 700.0))
    high = sum(torch.sin(2 * torch.pi * f * time) for f in (1800.0, 2500.0, 3200.0))
    mixture = (low + high + 0.001 * torch.randn(4000, generator=generator)).reshape(1, 1, -1)

    def ideal_embeddings(spectrogram: torch.Tensor) -> dict[str, torch.Tensor]:
        bins, frames = spectrogram.shape[-2:]
        above = (torch.arange(bins) >= 8).float()  # bin 8 of 33 is 1 kHz
        one_hot = torch.stack([1 - above, above], dim=-1)  # (bins, 2)
        one_hot = one_hot[:, None, :].expand(bins, frames, 2).reshape(1, bins * frames, 2)
        return {"embeddings": torch.nn.functional.pad(one_hot, (0, 18))}

    model.estimate = ideal_embeddings
    with torch.no_grad():
        separated = model.separate(mixture, InferenceOptions(niter=0))[0, :, 0]
    first, second = (
        separated
        if separated[0].abs() @ low.abs() > separated[1].abs() @ low.abs()
        else separated.flip(0)
    )
    for estimate, reference in ((first, low), (second, high)):
        error = (estimate - reference)[200:-200].square().mean() / reference.square().mean()
        assert error < 0.01


def test_chimera_separates_with_its_mask_head():
    model = _model(Chimera).eval()
    mixture = torch.randn(1, 1, 1500)
    with torch.no_grad():
        spectrogram = model.stft(mixture)
        masks = model(mixture)["masks"]
        magnitudes = model.separation_magnitudes(spectrogram, InferenceOptions(niter=0))
    torch.testing.assert_close(magnitudes, masks * spectrogram.abs().unsqueeze(1))


def test_unknown_choices_are_refused_with_the_options():
    with pytest.raises(ValueError, match="mask_type='hard'"):
        _model(DeepClustering, mask_type="hard")
    with pytest.raises(ValueError, match="unknown k-means init"):
        _model(DeepClustering, kmeans_init="random").separate(torch.randn(1, 1, 500))
    with pytest.raises(ValueError, match="unknown mask 'relu6'"):
        _model(MaskInference, mask="relu6")


def test_deep_clustering_on_named_stems_learns_an_anchor_per_stem_and_keeps_their_order():
    """Trained on named stems, separation gives each stem its place without k-means: the
    anchors, learned from the bins each stem dominates, name the clusters."""
    model = _model(DeepClustering, targets=["low", "high"], dropout=0.0)
    model.fit_sources(ordered=True)
    assert model.ordered_outputs and "anchors" in model(torch.randn(1, 1, 800))
    generator = torch.Generator().manual_seed(0)
    time = torch.arange(2000) / 8000

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        # a random low tone and a random high tone in each example
        low_hz = 150 + 700 * torch.rand(4, 1, generator=generator)
        high_hz = 1800 + 1500 * torch.rand(4, 1, generator=generator)
        low = torch.sin(2 * torch.pi * low_hz * time)
        high = 0.5 * torch.sin(2 * torch.pi * high_hz * time)
        sources = torch.stack([low, high], dim=1).unsqueeze(2)  # (4, 2, 1, time)
        return sources.sum(1), sources

    loss_function = DeepClusteringLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        mixture, sources = batch()
        loss = loss_function(model(mixture), model.references(sources, mixture))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    stored = {"model": {"config": model.config, "state_dict": model.state_dict()}}
    rebuilt = build_model(stored).eval()
    assert rebuilt.ordered_outputs  # the checkpoint separates as it trained
    mixture, sources = batch()
    separated = rebuilt.separate(mixture, InferenceOptions(niter=0))
    for index in range(2):
        reference = sources[:, index, 0, 200:-200]
        error = (separated[:, index, 0, 200:-200] - reference).square().mean()
        assert error / reference.square().mean() < 0.1, index


def test_deep_clustering_loss_adds_the_anchor_term_whose_minimum_is_each_stems_mean():
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.rand(2, 50, 4), dim=-1)
    assignments = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 50)), 3).float()
    weights = torch.rand(2, 50)
    means = (assignments * weights[..., None]).transpose(1, 2) @ embeddings
    means = means / (assignments * weights[..., None]).sum(1)[..., None]
    anchors = means.clone().requires_grad_(True)
    anchor_loss(embeddings, anchors, assignments, weights).sum().backward()
    torch.testing.assert_close(anchors.grad, torch.zeros_like(anchors), atol=1e-6, rtol=0)
    moved = anchor_loss(embeddings, means + 0.1, assignments, weights)
    assert (moved > anchor_loss(embeddings, means, assignments, weights)).all()


def test_a_deep_clustering_checkpoint_from_before_the_anchors_loads_and_clusters_speakers():
    model = DeepClustering(["s1", "s2"], 8000, 1, hidden_size=8, nb_layers=1, embedding_dim=4)
    old = {k: v for k, v in model.state_dict().items() if k not in ("anchors", "named_clusters")}
    rebuilt = DeepClustering(["s1", "s2"], 8000, 1, hidden_size=8, nb_layers=1, embedding_dim=4)
    rebuilt.load_state_dict(old, strict=True)
    assert not rebuilt.ordered_outputs and "anchors" not in rebuilt(torch.randn(1, 1, 800))

"""Demucs's augmentations: random shift, sign flip, and remixing sources across a batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sepkit.data.augment import Augmentation, RandomShift, RandomSignFlip, RemixBatch
from sepkit.data.toy import ToyMUSDB
from sepkit.errors import SepkitError

# Demucs v2's training augmentation (configs/experiment/demucs_musdb.yaml)
DEMUCS = Augmentation(
    gain_min=0.25,
    gain_max=1.25,
    channel_swap_probability=0.5,
    shift=1.0,
    sign_flip_probability=0.5,
    remix_group_size=4,
)


def test_random_shift_reads_each_source_from_its_own_offset():
    sources = torch.arange(3 * 2 * 110, dtype=torch.float32).reshape(3, 2, 110)
    shifted = RandomShift(10)(sources, np.random.default_rng(0))
    assert shifted.shape == (3, 2, 100)
    offsets = [int(shifted[index, 0, 0] - sources[index, 0, 0]) for index in range(3)]
    for index, offset in enumerate(offsets):
        assert 0 <= offset <= 10
        torch.testing.assert_close(shifted[index], sources[index, :, offset : offset + 100])
    again = RandomShift(10)(sources, np.random.default_rng(0))
    torch.testing.assert_close(again, shifted)


def test_sign_flip_inverts_whole_sources():
    sources = torch.rand(8, 2, 50) + 0.1
    assert torch.equal(RandomSignFlip(1.0)(sources, np.random.default_rng(0)), -sources)
    assert torch.equal(RandomSignFlip(0.0)(sources, np.random.default_rng(0)), sources)
    mixed = RandomSignFlip(0.5)(sources, np.random.default_rng(3))
    signs = (mixed / sources)[:, 0, 0]
    assert set(signs.tolist()) == {-1.0, 1.0}
    assert torch.equal(mixed, sources * signs[:, None, None])


def test_shift_comes_first_and_nothing_is_added_when_disabled():
    assert Augmentation().source_pieces(44100) == []
    chain = DEMUCS.source_pieces(44100)
    assert chain[0].max_shift == 44100  # seconds at the dataset's rate
    assert [type(piece).__name__ for piece in chain] == [
        "RandomShift",
        "RandomGain",
        "RandomChannelSwap",
        "RandomSignFlip",
    ]
    with pytest.raises(SepkitError, match="sign_flip_probability"):
        RandomSignFlip(1.5)


def test_remix_takes_each_source_from_an_item_of_its_group():
    torch.manual_seed(0)
    batch, group = 6, 3
    sources = torch.randn(batch, 4, 2, 30)
    rest = torch.randn(batch, 2, 30)  # stems that are in the mixture but not targets
    mixture = sources.sum(1) + rest
    remixed_mixture, remixed = RemixBatch(group)(mixture, sources)
    assert remixed.shape == sources.shape
    for item in range(batch):
        members = range(item // group * group, item // group * group + group)
        for source in range(4):
            assert any(torch.equal(remixed[item, source], sources[m, source]) for m in members)
    # every item of a group is used once per source: the group's totals are kept
    for start in (0, 3):
        torch.testing.assert_close(
            remixed[start : start + 3].sum(0), sources[start : start + 3].sum(0)
        )
        torch.testing.assert_close(
            remixed_mixture[start : start + 3].sum(0), mixture[start : start + 3].sum(0)
        )
    # the mixture is the remixed sources plus a remixed rest, one of the group's rests
    leftover = remixed_mixture - remixed.sum(1)
    for item in range(batch):
        members = range(item // group * group, item // group * group + group)
        assert any(torch.allclose(leftover[item], rest[m], atol=1e-5) for m in members)


def test_remix_handles_a_short_last_group_and_is_seeded():
    sources = torch.randn(5, 2, 1, 10)
    mixture = sources.sum(1)
    torch.manual_seed(4)
    first = RemixBatch(4)(mixture, sources)
    torch.manual_seed(4)
    second = RemixBatch(4)(mixture, sources)
    assert torch.equal(first[1], second[1])
    assert torch.equal(first[1][4], sources[4])  # a group of one keeps its item


def test_toy_dataset_with_demucs_augmentations_serves_segments(tmp_path):
    data = ToyMUSDB(
        root=str(tmp_path / "toy"),
        nb_train_tracks=2,
        nb_test_tracks=1,
        train_duration=3.0,
        test_duration=1.0,
        segment=0.5,
        samples_per_track=2,
        valid_fraction=0.5,
        augmentation=dataclasses.replace(DEMUCS, shift=0.25),
    )
    mixture, sources = data.training_set()[0, 1]
    assert mixture.shape == (2, 22050) and sources.shape == (4, 2, 22050)
    torch.testing.assert_close(sources.sum(0), mixture)
    assert isinstance(data.batch_augmentation, RemixBatch)
    assert data.batch_augmentation.group_size == 4

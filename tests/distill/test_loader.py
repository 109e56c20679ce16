"""Batches do not depend on the number of processes or on where a run was resumed."""

from __future__ import annotations

import itertools

import torch

from rdd_deploy.data import build_dataset
from rdd_deploy.distill.distributed import DistEnv
from rdd_deploy.distill.loader import EpochSampler, batches

from .conftest import TINY_DATA


def _keys(world: int, rank: int, epoch: int = 0, start: int = 0) -> list[tuple[int, int]]:
    sampler = EpochSampler(size=10, batch_size=4, env=DistEnv(rank=rank, world_size=world), seed=3)
    sampler.set_position(epoch, start)
    return list(sampler)


def test_two_ranks_share_exactly_the_single_process_batches() -> None:
    single = _keys(1, 0)
    rank0, rank1 = _keys(2, 0), _keys(2, 1)
    assert len(single) == 8 and len(rank0) == len(rank1) == 4  # 10 images: 2 full batches of 4, 2 left out
    for batch in range(2):
        assert sorted(single[4 * batch:4 * batch + 4]) == sorted(rank0[2 * batch:2 * batch + 2] + rank1[2 * batch:2 * batch + 2])


def test_epochs_reshuffle_and_resume_position_skips_batches() -> None:
    assert [i for _, i in _keys(1, 0, epoch=0)] != [i for _, i in _keys(1, 0, epoch=1)]
    assert _keys(1, 0, epoch=1, start=1) == _keys(1, 0, epoch=1)[4:]


def test_resumed_stream_equals_the_straight_one() -> None:
    dataset = build_dataset(TINY_DATA, "train", crop_size=(24, 24))
    env = DistEnv()
    straight = list(itertools.islice(batches(dataset, 4, env, seed=0, workers=0, start_iteration=0), 5))
    resumed = list(itertools.islice(batches(dataset, 4, env, seed=0, workers=0, start_iteration=3), 2))
    for (a_img, a_lbl), (b_img, b_lbl) in zip(straight[3:], resumed):
        assert torch.equal(a_img, b_img) and torch.equal(a_lbl, b_lbl)
    assert not torch.equal(straight[0][0], straight[2][0])  # epoch 1 (iteration 2) is a new augmentation


def test_augmentation_does_not_touch_the_global_rng() -> None:
    dataset = build_dataset(TINY_DATA, "train", crop_size=(24, 24))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    next(batches(dataset, 4, DistEnv(), seed=0, workers=0, start_iteration=0))
    assert torch.equal(torch.rand(3), expected)


def test_batches_travel_as_uint8_and_normalise_on_the_device_exactly_as_the_runtime_does() -> None:
    from rdd_deploy.distill.loader import DeviceNormalizer
    from rdd_deploy.runtime.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_batch

    dataset = build_dataset(TINY_DATA, "train", crop_size=(24, 24))
    images, labels = next(batches(dataset, 4, DistEnv(), seed=0, workers=0))
    assert images.dtype == torch.uint8 and images.shape == (4, 24, 24, 3) and labels.shape == (4, 24, 24)
    expected = torch.from_numpy(normalize_batch(images.numpy(), IMAGENET_MEAN, IMAGENET_STD))
    for channels_last in (False, True):
        normalized = DeviceNormalizer(IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"), channels_last)(images)
        assert torch.equal(normalized, expected)
        assert normalized.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_training_batches_pad_with_the_mean_colour_in_rgb_for_a_bgr_network() -> None:
    # the caffe convention lists its mean in BGR; the uint8 RGB pixels are padded with that mean as RGB
    from rdd_deploy.runtime.preprocess import NORMALIZATIONS

    channel_order, mean, std = NORMALIZATIONS["caffe"]
    dataset = build_dataset("synthetic:size=32,train=2", "train", crop_size=(40, 40), scale_range=None, flip=False,
                            mean=mean, std=std, channel_order=channel_order)
    images, labels = next(batches(dataset, 2, DistEnv(0, 1, 0, torch.device("cpu")), seed=0, workers=0))
    assert images.dtype == torch.uint8 and images.shape == (2, 40, 40, 3)
    assert images[0, 39, 39].tolist() == [round(255 * m) for m in reversed(mean)] and labels[0, 39, 39] == 255

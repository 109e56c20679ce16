"""Training augmentation: shapes, padding, joint flips, label values, and torch-RNG determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rdd_deploy.data import build_dataset
from rdd_deploy.data.transforms import pad_to, random_flip, train_transform
from rdd_deploy.runtime.preprocess import IMAGENET_MEAN, normalize


def test_crop_larger_than_image_pads_label_with_255(camvid_root: Path) -> None:
    ds = build_dataset(f"camvid:{camvid_root}", "train", crop_size=(64, 80), scale_range=(0.5, 0.5),
                       flip=False)
    torch.manual_seed(0)
    image, label = ds[0]
    assert image.shape == (3, 64, 80) and label.shape == (64, 80)
    # scaled to 16x24 and padded: everything outside that corner is ignored, and the image is zero there
    assert (label[16:] == 255).all() and (label[:, 24:] == 255).all()
    assert image[:, 16:, 24:].abs().max() < 0.01


def test_pad_uses_mean_colour_and_ignore() -> None:
    image, label = np.zeros((2, 3, 3), np.uint8), np.zeros((2, 3), np.int64)
    padded, padded_label = pad_to(image, label, (4, 5), IMAGENET_MEAN)
    assert padded.shape == (4, 5, 3) and (padded[3, 4] == [124, 116, 104]).all()
    assert (padded_label[2:] == 255).all() and (padded_label[:2, :3] == 0).all()
    assert np.abs(normalize(padded)[:, 3, 4]).max() < 0.01


def test_flip_moves_image_and_label_together() -> None:
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    label = np.arange(8, dtype=np.int64).reshape(2, 4)
    flipped = {random_flip(image, label)[1][0, 0] for _ in range(40)}
    assert flipped == {0, 3}  # both outcomes happen
    for _ in range(10):
        out_image, out_label = random_flip(image, label)
        assert np.array_equal(out_image[..., 0] // 3, out_label)  # pixel i carries label i wherever it lands


@pytest.mark.parametrize("flip", [True, False])
def test_crop_keeps_pixels_and_labels_aligned(flip: bool) -> None:
    # each pixel encodes its own label, so any misalignment between the two shows up after the transform
    label = np.random.default_rng(0).integers(0, 19, (60, 70)).astype(np.int64)
    image = np.repeat((label * 10).astype(np.uint8)[..., None], 3, axis=2)
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out_label = train_transform(image, label, (32, 32), None, flip, IMAGENET_MEAN)
        assert out_image.shape == (32, 32, 3) and np.array_equal(out_image[..., 0] // 10, out_label)


def test_same_torch_seed_same_sample(camvid_root: Path) -> None:
    ds = build_dataset(f"camvid:{camvid_root}", "train", crop_size=(24, 24))
    samples = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        samples.append(ds[1])
    assert torch.equal(samples[0][0], samples[1][0]) and torch.equal(samples[0][1], samples[1][1])
    assert not torch.equal(samples[0][0], samples[2][0])


def test_labels_stay_train_ids(cityscapes_root: Path) -> None:
    ds = build_dataset(f"cityscapes:{cityscapes_root}", "train", crop_size=(40, 40))
    torch.manual_seed(0)
    values = set().union(*(set(ds[i % len(ds)][1].unique().tolist()) for i in range(12)))
    assert values <= set(range(19)) | {255} and values & {0, 13, 18}


def test_validation_is_whole_image_and_repeatable(camvid_root: Path) -> None:
    ds = build_dataset(f"camvid:{camvid_root}", "val")
    first, second = ds[0], ds[0]
    assert first[0].shape == (3, 32, 48) and torch.equal(first[0], second[0])


def test_only_torch_rng_is_used(camvid_root: Path) -> None:
    import random

    ds = build_dataset(f"camvid:{camvid_root}", "train", crop_size=(24, 24))
    synthetic = build_dataset("synthetic", "train", crop_size=(64, 64))
    numpy_state, python_state, torch_state = np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state()
    ds[0], synthetic[0]
    assert np.array_equal(np.random.get_state()[1], numpy_state) and random.getstate() == python_state
    assert not torch.equal(torch.get_rng_state(), torch_state)

"""The procedural data set: deterministic, split-dependent, every class present, options parsed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdd_deploy.data import build_dataset
from rdd_deploy.errors import RDDError


def test_deterministic_and_split_dependent() -> None:
    first, second = build_dataset("synthetic", "train"), build_dataset("synthetic", "train")
    for a, b in zip(first.raw(0), second.raw(0)):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.raw(0)[0], build_dataset("synthetic", "val").raw(0)[0])
    assert not np.array_equal(first.raw(0)[0], first.raw(1)[0])


def test_shapes_sizes_and_info() -> None:
    train, val = build_dataset("synthetic", "train"), build_dataset("synthetic", "val")
    assert (len(train), len(val)) == (512, 64) and train.image_path(0) is None
    image, label = train.raw(5)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert label.shape == (128, 128) and label.dtype == np.int64
    assert train.info.name == "synthetic" and train.info.num_classes == 8 and len(train.info.palette) == 8
    tensor, target = train[5]
    assert tensor.shape == (3, 128, 128) and tensor.dtype == torch.float32 and target.dtype == torch.int64


def test_every_class_appears_in_val() -> None:
    ds = build_dataset("synthetic", "val")
    counts = sum(np.bincount(ds.raw(i)[1].ravel(), minlength=8) for i in range(len(ds)))
    assert counts.shape == (8,) and (counts > 0).all()
    assert counts[0] / counts.sum() < 0.9  # objects are not a rounding error next to the background


def test_colour_does_not_decide_the_class() -> None:
    # classes of one hue family (1 & 5, 2 & 4, 3 & 6) have the same mean colour: only texture and shape differ
    ds = build_dataset("synthetic", "val")
    sums, counts = np.zeros((8, 3)), np.zeros(8)
    for i in range(len(ds)):
        image, label = ds.raw(i)
        counts += np.bincount(label.ravel(), minlength=8)
        for c in range(3):
            sums[:, c] += np.bincount(label.ravel(), weights=image[..., c].ravel(), minlength=8)
    means = sums / counts[:, None]
    for a, b in ((1, 5), (2, 4), (3, 6)):
        assert np.abs(means[a] - means[b]).max() < 20


def test_options_and_training_crops() -> None:
    ds = build_dataset("synthetic:size=64,train=10,seed=1", "train", crop_size=(48, 48))
    assert len(ds) == 10 and ds.raw(0)[0].shape == (64, 64, 3)
    torch.manual_seed(0)
    image, label = ds[0]
    assert image.shape == (3, 48, 48) and set(label.unique().tolist()) <= set(range(8)) | {255}
    assert len(build_dataset("synthetic", "val", max_images=3)) == 3


def test_mislabel_changes_training_labels_only() -> None:
    from rdd_deploy.data.synthetic import CONFUSABLE

    spec = "synthetic:size=64,train=64,val=8"
    default, noisy = build_dataset(spec, "train"), build_dataset(spec + ",mislabel=50", "train")
    flipped, labelled = 0, 0
    for i in range(len(default)):
        (image, label), (noisy_image, noisy_label) = default.raw(i), noisy.raw(i)
        assert np.array_equal(image, noisy_image)  # the same pictures, only their labels differ
        changed = label != noisy_label
        # every changed pixel was relabelled with its class's confusable partner, in one direction or the other
        assert all(CONFUSABLE[a] == b or CONFUSABLE[b] == a for a, b in zip(label[changed], noisy_label[changed]))
        flipped, labelled = flipped + changed.sum(), labelled + (label > 0).sum()
    assert 0.3 < flipped / labelled < 0.6  # about half the objects, minus the 4 % the default already flips
    for a, b in zip(build_dataset(spec, "val").raw(0), build_dataset(spec + ",mislabel=50", "val").raw(0)):
        assert np.array_equal(a, b)  # validation labels stay the true ones


@pytest.mark.parametrize(("spec", "message"), [("synthetic:/data", "bad synthetic option '/data'"),
                                                ("synthetic:size=abc", "bad synthetic option 'size=abc'"),
                                                ("synthetic:size=8", "too small"),
                                                ("synthetic:mislabel=120", "mislabel=120 is a percentage")])
def test_bad_options(spec: str, message: str) -> None:
    with pytest.raises(RDDError, match=message):
        build_dataset(spec, "train")

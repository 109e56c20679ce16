"""Pre- and post-processing against straightforward numpy and torch references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdd_deploy.runtime.preprocess import (CAFFE_BGR_MEAN, NORMALIZATIONS, class_map, normalize, normalize_batch,
                                         resize_logits)


def test_normalize_matches_the_textbook_formula() -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = ((image / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)
    result = normalize(image, mean, std)
    assert result.dtype == np.float32 and result.shape == (3, 5, 7) and result.flags.c_contiguous
    np.testing.assert_allclose(result, expected, atol=2e-6)
    np.testing.assert_array_equal(normalize_batch(np.stack([image, image]), mean, std)[1], result)
    with pytest.raises(ValueError, match=r"\(5, 7, 4\)"):
        normalize(np.zeros((5, 7, 4), np.uint8))


@pytest.mark.parametrize("classes", [1, 19, 300])
def test_class_map_equals_argmax_with_ties_going_to_the_first_class(classes: int) -> None:
    logits = np.random.default_rng(classes).standard_normal((classes, 6, 9)).astype(np.float32)
    logits[:, 0, 0] = 1.0  # an all-way tie: class 0
    if classes > 2:
        logits[:, 1, 1] = -5.0
        logits[[1, 2], 1, 1] = 3.0  # a tie between 1 and 2: class 1
    result = class_map(logits)
    assert result.dtype == (np.uint8 if classes <= 256 else np.int32)
    np.testing.assert_array_equal(result, torch.from_numpy(logits).argmax(0).numpy())
    np.testing.assert_array_equal(result, logits.argmax(0))
    assert result[0, 0] == 0 and (classes <= 2 or result[1, 1] == 1)


def test_caffe_bgr_convention_is_pixel_minus_the_mean_in_bgr_order() -> None:
    image = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    channel_order, mean, std = NORMALIZATIONS["caffe"]
    expected = image[..., ::-1].astype(np.float32).transpose(2, 0, 1) - np.float32(CAFFE_BGR_MEAN)[:, None, None]
    np.testing.assert_array_equal(normalize(image, mean, std, channel_order), expected)


@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_logits_equals_torch_interpolate(align_corners: bool) -> None:
    logits = np.random.default_rng(3).normal(size=(3, 5, 7)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(logits)[None], size=(37, 50), mode="bilinear",
                                               align_corners=align_corners)[0].numpy()
    np.testing.assert_allclose(resize_logits(logits, (37, 50), align_corners), expected, rtol=0, atol=1e-5)

"""Pre- and post-processing against straightforward numpy and torch references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdd_deploy.runtime.preprocess import class_map, normalize, normalize_batch


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

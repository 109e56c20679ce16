"""A teacher with another input convention sees exactly its own normalisation of the student's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rdd_deploy.distill.renormalize import teacher_input
from rdd_deploy.runtime.preprocess import NORMALIZATIONS, normalize_batch


@pytest.mark.parametrize("student, teacher", [("imagenet", "caffe"), ("caffe", "imagenet")])
def test_renormalised_batch_equals_the_teachers_own_normalisation(student, teacher):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    s_order, s_mean, s_std = NORMALIZATIONS[student]
    t_order, t_mean, t_std = NORMALIZATIONS[teacher]
    converted = teacher_input(NORMALIZATIONS[student], NORMALIZATIONS[teacher])(
        torch.from_numpy(normalize_batch(pixels, s_mean, s_std, s_order)))
    expected = normalize_batch(pixels, t_mean, t_std, t_order)
    np.testing.assert_allclose(converted.numpy(), expected, rtol=0, atol=1e-3 if teacher == "caffe" else 1e-5)


def test_same_convention_needs_no_conversion():
    assert teacher_input(NORMALIZATIONS["imagenet"], NORMALIZATIONS["imagenet"]) is None

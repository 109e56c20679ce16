"""Feed the teacher its own input convention when the student was given another (e.g. a converted CIRKD teacher,
BGR with the Caffe mean, distilling into a student trained on ImageNet RGB)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rdd_deploy.checkpoint import Normalization
from rdd_deploy.runtime.preprocess import source_channels


class Renormalize(nn.Module):
    """Maps a batch normalised with `source` to the same pixels normalised with `target`: a channel permutation
    and one multiply-add per channel, on the device, with no round trip to uint8."""

    def __init__(self, source: Normalization, target: Normalization) -> None:
        super().__init__()
        (source_order, source_mean, source_std), (target_order, target_mean, target_std) = source, target
        rgb_to_source = np.argsort(source_channels(source_order))  # RGB channel -> the source channel holding it
        perm = [int(rgb_to_source[rgb]) for rgb in source_channels(target_order)]
        s_mean, s_std = np.asarray(source_mean, np.float64)[perm], np.asarray(source_std, np.float64)[perm]
        t_mean, t_std = np.asarray(target_mean, np.float64), np.asarray(target_std, np.float64)
        self.perm = perm
        self.register_buffer("scale", torch.tensor(s_std / t_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("shift", torch.tensor((s_mean - t_mean) / t_std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] in the source convention -> the target convention."""
        if self.perm != [0, 1, 2]:
            images = images[:, self.perm]
        return images * self.scale.to(images.dtype) + self.shift.to(images.dtype)


def teacher_input(student: Normalization, teacher: Normalization) -> Renormalize | None:
    """The conversion the teacher's input needs, None when both networks expect the same convention."""
    same = student[0] == teacher[0] and np.allclose(student[1], teacher[1], rtol=0, atol=1e-9) \
        and np.allclose(student[2], teacher[2], rtol=0, atol=1e-9)
    return None if same else Renormalize(student, teacher)

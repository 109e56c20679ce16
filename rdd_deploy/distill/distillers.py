"""Other distillers RDD combines with (the paper's Table 8): attention transfer and channel-wise distillation.

Both compute in float32 even under autocast and never back-propagate into the teacher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rdd_deploy.models.segmentor import upsample_logits


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """AT's spatial attention: channel mean of squared activations, flattened and L2-normalised, [N, H*W]."""
    return F.normalize(features.float().pow(2).mean(dim=1).flatten(1), dim=1)


def at_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017): sum over stage pairs of mean (a_s - a_t)^2.

    The maps are channel-free, so a ResNet-18 or MobileNetV2 student pairs with a ResNet-101 teacher; a student
    stage with another spatial size is resized to the teacher's first.
    """
    with torch.autocast(student_features[0].device.type, enabled=False):
        total = torch.zeros((), device=student_features[0].device)
        for s_feat, t_feat in zip(student_features, teacher_features):
            s_feat = upsample_logits(s_feat.float(), t_feat.shape[-2:])
            total = total + (attention_map(s_feat) - attention_map(t_feat.detach())).pow(2).mean()
        return total


def cwd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Channel-wise distillation (Shu et al. 2021): per channel, KL between spatial softmaxes, times T^2 / C.

    Averaged over the batch; the teacher's logits are resized to the student's grid.
    """
    with torch.autocast(student_logits.device.type, enabled=False):
        teacher_logits = upsample_logits(teacher_logits.detach().float(), student_logits.shape[-2:])
        n, c = student_logits.shape[:2]
        log_ps = F.log_softmax(student_logits.float().flatten(2) / temperature, dim=2)
        log_pt = F.log_softmax(teacher_logits.flatten(2) / temperature, dim=2)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum()
        return kl * temperature**2 / (n * c)

"""Segmentation models: the teacher and the students, built by name."""

from rdd_deploy.models.registry import MODELS, build_model, list_models
from rdd_deploy.models.segmentor import ALIGN_CORNERS, FullResolution, Segmentor, upsample_logits

__all__ = ["ALIGN_CORNERS", "MODELS", "FullResolution", "Segmentor", "build_model", "list_models", "upsample_logits"]

"""Segmentation models: the teacher and the students, built by name."""

from rdd_deploy.models.registry import MODELS, VARIANTS, build_model, list_models, model_variants
from rdd_deploy.models.segmentor import ALIGN_CORNERS, FullResolution, Segmentor, upsample_logits

__all__ = ["ALIGN_CORNERS", "MODELS", "VARIANTS", "FullResolution", "Segmentor", "build_model", "list_models",
           "model_variants", "upsample_logits"]

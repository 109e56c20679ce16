"""rdd-deploy: Relative Difficulty Distillation for semantic segmentation, from training to the edge."""

__version__ = "0.1.0"

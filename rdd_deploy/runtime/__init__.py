"""Edge runtime: numpy + pillow + an inference engine (ONNX Runtime, OpenVINO or TensorRT); never PyTorch."""

from rdd_deploy.runtime.images import load_image
from rdd_deploy.runtime.latency import LatencyReport, LatencyStats, benchmark, time_callable
from rdd_deploy.runtime.metrics import SegmentationMetric
from rdd_deploy.runtime.model_info import ModelInfo
from rdd_deploy.runtime.parity import ParityAccumulator, ParityReport, compare
from rdd_deploy.runtime.segmenter import Segmenter

__all__ = ["LatencyReport", "LatencyStats", "ModelInfo", "ParityAccumulator", "ParityReport", "SegmentationMetric",
           "Segmenter", "benchmark", "compare", "load_image", "time_callable"]

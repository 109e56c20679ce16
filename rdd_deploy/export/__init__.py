"""Export: checkpoint -> verified ONNX (FP32 / FP16 / INT8 QDQ) -> TensorRT engine + JSON sidecar.

One table of formats (`FORMATS`), one `export_<format>()` per format, each logged the same way and each
verified against PyTorch on real images before its file appears under the final name.
"""

from rdd_deploy.export.exporter import ExportOptions, check_input_size, export, parse_input_size
from rdd_deploy.export.formats import CALIBRATION_METHODS, FORMATS, PRECISIONS, artifact_name
from rdd_deploy.export.graph import DeployModel, export_metadata, export_onnx, read_metadata, revert_sync_batchnorm
from rdd_deploy.export.quantize import export_onnx_fp16, export_onnx_int8
from rdd_deploy.export.tensorrt import BuildPlan, export_engine, plan_build, profile_dims
from rdd_deploy.export.verify import MIN_AGREEMENT, Verifier

__all__ = ["CALIBRATION_METHODS", "FORMATS", "MIN_AGREEMENT", "PRECISIONS", "BuildPlan", "DeployModel",
           "ExportOptions", "Verifier", "artifact_name", "check_input_size", "export", "export_engine",
           "export_metadata", "export_onnx", "export_onnx_fp16", "export_onnx_int8", "parse_input_size",
           "plan_build", "profile_dims", "read_metadata", "revert_sync_batchnorm"]

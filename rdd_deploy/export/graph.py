"""PyTorch -> ONNX: the deployable wrapper (optional fused preprocessing and argmax), metadata, check and slim."""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from rdd_deploy.atomic import atomic_path
from rdd_deploy.errors import RDDError
from rdd_deploy.export.formats import reported
from rdd_deploy.export.verify import Verifier, onnx_runner
from rdd_deploy.models import FullResolution
from rdd_deploy.runtime.model_info import decode_metadata
from rdd_deploy.runtime.preprocess import affine_constants, source_channels

OPSET = 17  # the oldest opset the issue allows: parsed by every TensorRT 10 (JetPack 6) and ONNX Runtime >= 1.14
INPUT_NAME = "images"
LAYOUTS = {False: "NCHW_float", True: "NHWC_uint8"}
METADATA_FORMAT = "1"


class BatchNormXd(nn.modules.batchnorm._BatchNorm):
    """BatchNorm for any input rank, the plain counterpart of SyncBatchNorm (which also accepts any rank)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        return None


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every SyncBatchNorm by an equivalent BatchNorm (torch only converts the other way)."""
    result = module
    if isinstance(module, nn.SyncBatchNorm):
        result = BatchNormXd(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                result.weight.copy_(module.weight)
                result.bias.copy_(module.bias)
        if module.track_running_stats:
            result.running_mean.copy_(module.running_mean)
            result.running_var.copy_(module.running_var)
            result.num_batches_tracked.copy_(module.num_batches_tracked)
        result.train(module.training)
    for name, child in module.named_children():
        result.add_module(name, revert_sync_batchnorm(child))
    return result


class DeployModel(nn.Module):
    """What goes into the ONNX graph: [uint8 NHWC -> normalised NCHW] -> full-resolution logits [-> int32 mask]."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], fused: bool,
                 argmax: bool, channel_order: str = "RGB") -> None:
        super().__init__()
        self.net = FullResolution(model)
        self.fused, self.argmax = fused, argmax
        # The same float32 constants, channel order and operations as runtime.preprocess.normalize_batch.
        scale, shift = (torch.from_numpy(v).view(1, 3, 1, 1) for v in affine_constants(mean, std))
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)
        self.channels = list(source_channels(channel_order))

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits [N,C,H,W] at the input size, and the argmax mask [N,H,W] int32 when asked for."""
        if self.fused:
            images = images.permute(0, 3, 1, 2)
            if self.channels != [0, 1, 2]:
                images = images[:, self.channels]
            images = images.to(torch.float32) * self.scale - self.shift
        logits = self.net(images)
        if self.argmax:
            # int32, not ONNX ArgMax's int64: TensorRT's TopK yields int32 and edge runtimes prefer it.
            return logits, logits.argmax(dim=1).to(torch.int32)
        return logits


def export_metadata(meta: dict[str, Any], model_name: str, num_classes: int, input_size: tuple[int, int],
                    dynamic: bool, fused: bool, precision: str) -> dict[str, Any]:
    """The metadata contract shared with the runtime, as native JSON values (see `encode_metadata`)."""
    class_names = list(meta.get("class_names") or [f"class_{i}" for i in range(num_classes)])
    if len(class_names) != num_classes:
        raise RDDError(f"checkpoint meta lists {len(class_names)} class_names but model '{model_name}' "
                       f"predicts {num_classes} classes")
    from rdd_deploy.checkpoint import meta_normalization

    channel_order, mean, std = meta_normalization(meta)
    metadata = {
        "rdd_deploy.format": METADATA_FORMAT, "model_name": model_name, "num_classes": num_classes,
        "class_names": class_names, "mean": list(mean), "std": list(std),
        "channel_order": channel_order, "align_corners": bool(meta.get("align_corners", False)),
        "input_layout": LAYOUTS[fused],
        "input_size": list(input_size), "dynamic": dynamic, "precision": precision,
        "torch_miou": meta.get("miou"),
        "ignore_index": 255 if meta.get("ignore_index") is None else int(meta["ignore_index"]),
    }
    if meta.get("palette") is not None:
        metadata["palette"] = [list(color) for color in meta["palette"]]
    return metadata


def encode_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """ONNX metadata_props are strings: plain strings stay as they are, everything else is JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported ONNX file as native values (the inverse of `encode_metadata`)."""
    props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    return decode_metadata(props)


def set_metadata(model: onnx.ModelProto, metadata: dict[str, Any]) -> None:
    """Replace the model's metadata_props with the encoded contract."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, encode_metadata(metadata))


def _torch_to_onnx(module: DeployModel, example: torch.Tensor, path: Path, dynamic: bool) -> None:
    """TorchScript export (dynamo=False): the models avoid data-dependent control flow and pool exactly."""
    outputs = ["logits", "mask"] if module.argmax else ["logits"]
    dynamic_axes = None
    if dynamic:
        image_axes = {0: "batch", 1: "height", 2: "width"} if module.fused else {0: "batch", 2: "height", 3: "width"}
        dynamic_axes = {INPUT_NAME: image_axes, "logits": {0: "batch", 2: "height", 3: "width"}}
        if module.argmax:
            dynamic_axes["mask"] = {0: "batch", 1: "height", 2: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings say nothing actionable to our users
        try:
            torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=outputs, opset_version=OPSET, dynamic_axes=dynamic_axes)
        except Exception as exc:  # the exporter raises many types; the user needs one line
            raise RDDError(f"torch.onnx.export failed: {exc.__class__.__name__}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None


def check(model: onnx.ModelProto, what: str) -> None:
    """onnx.checker with shape inference; a failure becomes one RDDError line."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise RDDError(f"{what} fails onnx.checker: {str(exc).splitlines()[0]}") from None


def slim(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and graph clean-up with onnxslim (the result is re-checked and re-verified by callers)."""
    import onnxslim

    return onnxslim.slim(model)


@reported("onnx", "fp32")
def export_onnx(model: nn.Module, path: str | Path, metadata: dict[str, Any], batch: int = 1,
                argmax: bool = False, verifier: Verifier | None = None) -> Path:
    """Export `model` to a checked, slimmed, verified FP32 ONNX file at `path` (atomically)."""
    path = Path(path)
    fused = metadata["input_layout"] == LAYOUTS[True]
    # The same graph serves every input size when dynamic; PSPNet stays exact there too, because its
    # pooling matrices are computed from the feature map's runtime shape (see models.heads).
    module = DeployModel(revert_sync_batchnorm(model), metadata["mean"], metadata["std"], fused, argmax,
                         metadata.get("channel_order", "RGB")).eval()
    h, w = metadata["input_size"]
    example = (torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8) if fused
               else torch.randn(batch, 3, h, w))
    with tempfile.TemporaryDirectory(prefix="rdd-export-") as scratch:
        raw_path = Path(scratch) / "raw.onnx"
        _torch_to_onnx(module, example, raw_path, metadata["dynamic"])
        raw = onnx.load(str(raw_path))
    check(raw, f"exported graph for {path.name}")
    slimmed = slim(raw)
    check(slimmed, f"slimmed graph for {path.name}")
    set_metadata(slimmed, metadata)
    with atomic_path(path) as tmp:
        onnx.save(slimmed, str(tmp))
        if verifier is not None:
            verifier.check(onnx_runner(tmp), "fp32", path.name)
    return path

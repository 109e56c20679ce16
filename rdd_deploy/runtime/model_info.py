"""What an exported model says about itself: ONNX metadata_props or a TensorRT engine's JSON sidecar."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.preprocess import CHANNEL_ORDERS, IMAGENET_MEAN, IMAGENET_STD

FORMAT_VERSION = "1"
LAYOUTS = ("NCHW_float", "NHWC_uint8")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")  # bf16: an FP32 file run by OpenVINO at bf16
ENGINE_KEYS = ("tensorrt_version", "device_name", "compute_capability")
STRING_KEYS = ("rdd_deploy.format", "model_name", "input_layout", "precision", "channel_order")  # unquoted in ONNX


def decode_metadata(props: dict[str, str]) -> dict[str, Any]:
    """ONNX metadata_props (plain strings for STRING_KEYS, JSON for the rest) as native values."""
    try:
        return {key: value if key in STRING_KEYS else json.loads(value) for key, value in props.items()}
    except json.JSONDecodeError as exc:
        raise RDDError(f"ONNX metadata is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class ModelInfo:
    """The metadata contract between export and runtime (see DESIGN.md section 5)."""

    model_name: str
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channel_order: str = "RGB"  # the network's input channels; mean and std are listed in this order
    align_corners: bool = False  # how the network's logits are resized (the runtime resizes them the same way)
    input_layout: str = "NCHW_float"
    input_size: tuple[int, int] | None = None
    dynamic: bool = True
    precision: str = "fp32"
    ignore_index: int = 255
    torch_miou: float | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    engine: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: dict[str, Any], source: str) -> ModelInfo:
        """Read ONNX metadata_props (strings, JSON-encoded) or a sidecar (native JSON); errors name source and key."""
        if "rdd_deploy.format" not in raw:
            raise RDDError(f"{source} has no rdd-deploy metadata (key 'rdd_deploy.format'); "
                           "export it with `rdd-deploy export`")
        reader = _Reader(raw, source)
        version = str(raw["rdd_deploy.format"]).strip('"')  # "1" in metadata_props, "1" or 1 in a sidecar
        if version != FORMAT_VERSION:
            raise RDDError(f"{source}: metadata format '{version}' is not supported (this runtime reads "
                           f"'{FORMAT_VERSION}'); upgrade rdd-deploy")
        num_classes = reader.get("num_classes", int)
        if num_classes < 1:
            raise RDDError(f"{source}: metadata 'num_classes' must be >= 1, got {num_classes}")
        names = tuple(str(n) for n in reader.get("class_names", list, [f"class_{i}" for i in range(num_classes)]))
        if len(names) != num_classes:
            raise RDDError(f"{source}: metadata 'class_names' has {len(names)} names for {num_classes} classes")
        palette = reader.get("palette", list, None)
        if palette is not None and (len(palette) < num_classes or any(len(c) != 3 for c in palette)):
            raise RDDError(f"{source}: metadata 'palette' needs one [r, g, b] per class ({num_classes})")
        layout = reader.get("input_layout", str, "NCHW_float")
        if layout not in LAYOUTS:
            raise RDDError(f"{source}: metadata 'input_layout' is '{layout}'; expected one of {', '.join(LAYOUTS)}")
        precision = reader.get("precision", str, "fp32")
        if precision not in PRECISIONS:
            raise RDDError(f"{source}: metadata 'precision' is '{precision}'; expected one of {', '.join(PRECISIONS)}")
        size = reader.get("input_size", list, None)
        if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)):
            raise RDDError(f"{source}: metadata 'input_size' should be [height, width], got {size}")
        mean, std = reader.get("mean", list, list(IMAGENET_MEAN)), reader.get("std", list, list(IMAGENET_STD))
        if len(mean) != 3 or len(std) != 3:
            raise RDDError(f"{source}: metadata 'mean' and 'std' need 3 values each, got {mean} and {std}")
        channel_order = reader.get("channel_order", str, "RGB")
        if channel_order not in CHANNEL_ORDERS:
            raise RDDError(f"{source}: metadata 'channel_order' is '{channel_order}'; expected one of "
                           f"{', '.join(CHANNEL_ORDERS)}")
        miou = reader.get("torch_miou", float, None)
        return cls(model_name=reader.get("model_name", str, "unknown"), num_classes=num_classes, class_names=names,
                   mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                   channel_order=channel_order, align_corners=reader.get("align_corners", bool, False),
                   input_layout=layout,
                   input_size=(int(size[0]), int(size[1])) if size else None,
                   dynamic=reader.get("dynamic", bool, True), precision=precision,
                   ignore_index=reader.get("ignore_index", int, 255), torch_miou=miou,
                   palette=tuple(tuple(int(v) for v in c) for c in palette[:num_classes]) if palette else None,
                   engine={key: raw[key] for key in ENGINE_KEYS if key in raw})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


class _Reader:
    """Typed access to metadata values that may be JSON-encoded strings (ONNX) or native values (sidecar)."""

    _missing = object()

    def __init__(self, raw: dict[str, Any], source: str) -> None:
        self.raw, self.source = raw, source

    def get(self, key: str, kind: type, default: Any = _missing) -> Any:
        """The value of `key` as `kind` (None stays None), or `default`; a missing required key is an error."""
        if key not in self.raw:
            if default is self._missing:
                raise RDDError(f"{self.source}: metadata key '{key}' is missing")
            return default
        value = self.raw[key]
        if isinstance(value, str) and (kind is not str or value.startswith('"')):  # tolerate JSON-encoded strings
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise RDDError(f"{self.source}: metadata '{key}' is not valid JSON: {value[:60]!r}") from None
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RDDError(f"{self.source}: metadata '{key}' should be {kind.__name__}, got {value!r}")
        return value

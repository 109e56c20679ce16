"""ModelInfo reads ONNX metadata_props (JSON-encoded strings) and sidecars (native JSON) alike."""

from __future__ import annotations

import json

import pytest

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.model_info import ModelInfo


def test_strings_and_native_values_parse_the_same(make_metadata) -> None:
    native = make_metadata(size=(512, 1024), dynamic=False, precision="fp16", torch_miou=0.7412,
                           palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0]], tensorrt_version="10.3.0")
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in native.items()}
    from_props, from_sidecar = ModelInfo.parse(props, "a.onnx"), ModelInfo.parse(native, "a.engine.json")
    assert from_props == from_sidecar
    assert from_props.input_size == (512, 1024) and from_props.dynamic is False and from_props.torch_miou == 0.7412
    assert from_props.palette[1] == (255, 0, 0) and from_props.engine == {"tensorrt_version": "10.3.0"}


@pytest.mark.parametrize("key, value, message", [
    ("input_layout", "NCHW_uint8", "'input_layout' is 'NCHW_uint8'; expected one of NCHW_float, NHWC_uint8"),
    ("num_classes", "three", "'num_classes' is not valid JSON"),
    ("input_size", "[512]", "'input_size' should be [height, width], got [512]"),
    ("rdd_deploy.format", "2", "metadata format '2' is not supported"),
])
def test_bad_field_is_named(make_metadata, key: str, value: str, message: str) -> None:
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in make_metadata().items()}
    props[key] = value
    with pytest.raises(RDDError, match=f"^m.onnx: .*{message.replace('[', '.').replace(']', '.')}"):
        ModelInfo.parse(props, "m.onnx")

"""The edge runtime must import and run with PyTorch made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np
import rdd_deploy.runtime
from rdd_deploy.runtime import Segmenter, SegmentationMetric
from rdd_deploy.runtime.masks import mask_image, palette_of
import rdd_deploy.runtime.evaluate, rdd_deploy.runtime.tables, rdd_deploy.runtime.tensorrt_engine
import rdd_deploy.runtime.openvino_engine

segmenter = Segmenter.from_file(sys.argv[1], sys.argv[2])
image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
mask = segmenter.predict(image)
metric = SegmentationMetric(segmenter.info.num_classes)
metric.update(mask, mask)
mask_image(mask, palette_of(segmenter.info))
assert sys.modules["torch"] is None
print(mask.shape, metric.compute()["pixel_acc"])
"""


def test_runtime_runs_without_torch(dynamic_onnx: Path, backend: str) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(dynamic_onnx), backend], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(48, 80) 1.0"

"""Parity: does an exported model still predict what the PyTorch model predicts? (numpy statistics only)

Both models go through the same Segmenter preprocessing, so differences come from the export alone.
mIoU and Boundary IoU values are in percentage points; agreement is the percentage of pixels whose argmax
matches. Boundary IoU is reported, not judged: the release gate stays agreement and mIoU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rdd_deploy.errors import RDDError
from rdd_deploy.runtime.metrics import SegmentationScores
from rdd_deploy.runtime.preprocess import class_map
from rdd_deploy.runtime.segmenter import Segmenter

# precision -> (minimum argmax agreement %, largest |mIoU difference| in points)
# bf16 (an FP32 file run by OpenVINO at bf16) keeps 8 mantissa bits to FP16's 11, so its floor sits between FP16's
# and INT8's; see docs/benchmarks.md for what trained checkpoints reach.
TOLERANCES: dict[str, tuple[float, float]] = {"fp32": (99.9, 0.1), "fp16": (99.0, 0.5), "bf16": (98.5, 0.5),
                                              "int8": (97.0, 1.0)}
Sample = tuple[np.ndarray, np.ndarray | None]  # (HxWx3 uint8 image, HxW label or None)
REFERENCE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@dataclass
class ParityReport:
    """Agreement, logit errors and mIoU of a candidate against a reference, judged against tolerances."""

    precision: str
    images: int
    pixels: int
    agreement: float  # % of pixels with the same argmax
    max_abs_error: float
    mean_abs_error: float
    reference_miou: float | None  # % points; None without labels
    candidate_miou: float | None
    miou_diff: float | None  # candidate - reference, points
    min_agreement: float
    max_miou_drop: float  # largest allowed |miou_diff|
    reference_boundary_miou: float | None = None  # % points; None without labels
    candidate_boundary_miou: float | None = None
    boundary_miou_diff: float | None = None  # candidate - reference, points
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no tolerance is broken."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict including `passed`."""
        return {**asdict(self), "passed": self.passed}


class ParityAccumulator:
    """Collects per-image comparisons; `report()` judges them."""

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None) -> None:
        self.images = self.pixels = self.agree = 0
        self.abs_sum, self.abs_count, self.abs_max = 0.0, 0, 0.0
        self.reference = SegmentationScores(num_classes, ignore_index, class_names)
        self.candidate = SegmentationScores(num_classes, ignore_index, class_names)
        self.labelled = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray, label: np.ndarray | None = None) -> None:
        """Compare one image's [C, H, W] logits; with a label also score both argmaxes."""
        if reference.shape != candidate.shape:
            raise RDDError(f"reference logits {list(reference.shape)} and candidate logits "
                           f"{list(candidate.shape)} differ in shape")
        ref_mask, cand_mask = class_map(reference), class_map(candidate)
        error = np.abs(reference.astype(np.float32) - candidate.astype(np.float32))
        self.images += 1
        self.pixels += ref_mask.size
        self.agree += int((ref_mask == cand_mask).sum())
        self.abs_sum += float(error.sum(dtype=np.float64))
        self.abs_count += error.size
        self.abs_max = max(self.abs_max, float(error.max()))
        if label is not None:
            self.reference.update(ref_mask, label)
            self.candidate.update(cand_mask, label)
            self.labelled += 1

    def report(self, precision: str, min_agreement: float | None = None,
               max_miou_drop: float | None = None) -> ParityReport:
        """Judge the statistics; tolerances default to TOLERANCES[precision]."""
        if precision not in TOLERANCES:
            raise RDDError(f"no parity tolerances for precision '{precision}' (known: {', '.join(TOLERANCES)})")
        if self.images == 0:
            raise RDDError("parity compared no images")
        default_agreement, default_drop = TOLERANCES[precision]
        min_agreement = default_agreement if min_agreement is None else min_agreement
        max_miou_drop = default_drop if max_miou_drop is None else max_miou_drop
        agreement = 100.0 * self.agree / self.pixels
        ref_miou = cand_miou = diff = ref_boundary = cand_boundary = boundary_diff = None
        if self.labelled:
            ref, cand = self.reference.summary(), self.candidate.summary()
            ref_miou, cand_miou = 100.0 * ref["miou"], 100.0 * cand["miou"]
            ref_boundary, cand_boundary = 100.0 * ref["boundary_miou"], 100.0 * cand["boundary_miou"]
            diff, boundary_diff = cand_miou - ref_miou, cand_boundary - ref_boundary
        failures = []
        if agreement < min_agreement:
            failures.append(f"argmax agreement {agreement:.3f}% is below {min_agreement}% ({precision})")
        if diff is not None and not abs(diff) <= max_miou_drop:
            failures.append(f"mIoU {cand_miou:.2f} differs from the reference {ref_miou:.2f} by {diff:+.2f} points "
                            f"(allowed {max_miou_drop}, {precision})")
        return ParityReport(precision=precision, images=self.images, pixels=self.pixels, agreement=agreement,
                            max_abs_error=self.abs_max, mean_abs_error=self.abs_sum / self.abs_count,
                            reference_miou=ref_miou, candidate_miou=cand_miou, miou_diff=diff,
                            min_agreement=min_agreement, max_miou_drop=max_miou_drop,
                            reference_boundary_miou=ref_boundary, candidate_boundary_miou=cand_boundary,
                            boundary_miou_diff=boundary_diff, failures=failures)


def compare(reference: Segmenter, candidate: Segmenter, samples: Iterable[Sample],
            min_agreement: float | None = None, max_miou_drop: float | None = None, ignore_index: int | None = None,
            on_image: Callable[[], None] | None = None) -> ParityReport:
    """Run every sample through both segmenters and judge the candidate at its own precision.

    ignore_index: the labels' ignore value (the data set's), by default the candidate's metadata.
    """
    stats = accumulate(reference, [candidate], samples, ignore_index, on_image)[0]
    return stats.report(candidate.info.precision, min_agreement, max_miou_drop)


def accumulate(reference: Segmenter, candidates: Sequence[Segmenter], samples: Iterable[Sample],
               ignore_index: int | None = None, on_image: Callable[[], None] | None = None) -> list[ParityAccumulator]:
    """The statistics `compare` judges, for several candidates in one pass: each image goes through the reference
    once (a candidate that is the reference reuses its logits). Each accumulator also holds both models' scores on
    the labelled samples (`.reference`, `.candidate`: SegmentationScores)."""
    for candidate in candidates:
        if reference.info.num_classes != candidate.info.num_classes:
            raise RDDError(f"the reference has {reference.info.num_classes} classes but {candidate.source} has "
                           f"{candidate.info.num_classes}")
    stats = [ParityAccumulator(c.info.num_classes, c.info.ignore_index if ignore_index is None else ignore_index,
                               c.info.class_names) for c in candidates]
    for image, label in samples:
        expected = reference.logits(image)
        for candidate, accumulator in zip(candidates, stats):
            accumulator.update(expected, expected if candidate is reference else candidate.logits(image), label)
        if on_image is not None:
            on_image()
    return stats


def reference_photos() -> list[Sample]:
    """Real RGB photos from scikit-image (no download), unlabelled: parity then checks agreement only."""
    try:
        from skimage import data
    except ImportError:
        raise RDDError("parity without --data uses scikit-image's sample photos: pip install scikit-image, "
                       "or pass --data name:path") from None
    return [(np.ascontiguousarray(getattr(data, name)()), None) for name in REFERENCE_PHOTOS]

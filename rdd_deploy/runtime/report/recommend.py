"""The release decision: the fastest run that passes the parity gate, and why each other run lost."""

from __future__ import annotations

from typing import Any


def speed(run: dict[str, Any]) -> float:
    """What 'fastest' means here: the median end-to-end time (uint8 image to mask), in ms."""
    return run["latency"]["end_to_end"]["median_ms"]


def passes(run: dict[str, Any]) -> bool:
    """The parity gate: the reference file passes by definition, every other run by its own tolerances."""
    return run["parity"] is None or run["parity"]["passed"]


def recommend(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """{'run': index or None, 'name', 'why', 'others': [{'run', 'name', 'reason'}]} for runs from `collect`."""
    passing = [i for i, run in enumerate(runs) if passes(run)]
    best = min(passing, key=lambda i: speed(runs[i]), default=None)
    others = []
    for index, run in enumerate(runs):
        if index == best:
            continue
        if not passes(run):
            reason = "fails parity: " + "; ".join(run["parity"]["failures"])
        else:
            ratio = speed(run) / speed(runs[best])
            reason = (f"slower: {speed(run):.2f} ms median end to end against {speed(runs[best]):.2f} ms "
                      f"({ratio:.2f}x)")
        others.append({"run": index, "name": run["name"], "reason": reason})
    if best is None:
        return {"run": None, "name": None, "why": "no run passes the parity gate; ship none of these files",
                "others": others}
    chosen = runs[best]
    gate = "it is the reference" if chosen["parity"] is None else (
        f"argmax agreement {chosen['parity']['agreement']:.3f}% and mIoU difference "
        f"{chosen['parity']['miou_diff']:+.2f} points are within its {chosen['precision']} tolerances")
    why = (f"the fastest run that passes the parity gate: {speed(chosen):.2f} ms median end to end, "
           f"{chosen['latency']['end_to_end']['fps']:.1f} FPS on average; {gate}; "
           f"val mIoU {100 * chosen['accuracy']['miou']:.2f}%")
    return {"run": best, "name": chosen["name"], "why": why, "others": others}

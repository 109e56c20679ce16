"""`rdd-deploy report` on a small trained model (the packaged synthetic teacher): its numbers are validate's, parity's
and bench's; a deliberately broken INT8 file is never recommended; the page renders in Chromium with no request."""

from __future__ import annotations

import copy
import http.server
import json
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from rdd_deploy.cli import app
from rdd_deploy.runtime.report.charts import formatted, lookup
from rdd_deploy.runtime.report.recommend import recommend

pytestmark = pytest.mark.slow
runner = CliRunner()
DATA = "synthetic:size=64,train=16,val=6"
FAST = ["--warmup", "1", "--iters", "3"]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The packaged teacher, its FP32 ONNX export, an INT8 file calibrated on one flat dark image (so every
    activation range is wrong for real images), and the report of all three."""
    from rdd_deploy.export import ExportOptions, export
    from rdd_deploy.export.quantize import export_onnx_int8
    from rdd_deploy.quickstart import PACKAGED_TEACHER
    from rdd_deploy.runtime.model_info import decode_metadata

    folder = tmp_path_factory.mktemp("release")
    checkpoint = Path(shutil.copy(PACKAGED_TEACHER, folder / "teacher.pt"))
    fp32 = export(checkpoint, ExportOptions(out=folder, input_size=(64, 64), calib_data=DATA))[0]
    meta = decode_metadata({p.key: p.value for p in onnx.load(str(fp32)).metadata_props})
    broken = export_onnx_int8(fp32, folder / "broken_int8.onnx", meta, [np.full((64, 64, 3), 20, np.uint8)])
    out = folder / "report"
    result = runner.invoke(app, ["report", str(checkpoint), str(fp32), str(broken), "--data", DATA, "--out",
                                 str(out), "--examples", "2", *FAST])
    assert result.exit_code == 0, result.output
    return {"checkpoint": checkpoint, "fp32": fp32, "broken": broken, "out": out}


def load(release: dict[str, Path]) -> dict:
    return json.loads((release["out"] / "report.json").read_text())


def run_of(report: dict, path: Path, backend: str = "onnxruntime") -> dict:
    return next(r for r in report["runs"] if r["model"] == str(path) and r["backend"] == backend)


def test_numbers_are_those_validate_parity_and_bench_give(release: dict[str, Path], tmp_path: Path) -> None:
    report = load(release)
    for path in (release["fp32"], release["broken"]):
        out = tmp_path / f"{path.stem}.json"
        result = runner.invoke(app, ["validate", str(path), "--data", DATA, "--json", str(out)])
        assert result.exit_code == 0, result.output
        validated, reported = json.loads(out.read_text()), run_of(report, path)["accuracy"]
        assert reported["confusion"] == validated["confusion"]
        assert reported["miou"] == pytest.approx(validated["miou"], rel=1e-12)
        assert reported["boundary_miou"] == pytest.approx(validated["boundary_miou"], rel=1e-12)
        assert reported["iou"] == pytest.approx(validated["iou"], rel=1e-12)
        assert reported["images"] == validated["images"] == 6
        out = tmp_path / f"{path.stem}_parity.json"
        result = runner.invoke(app, ["parity", "--checkpoint", str(release["checkpoint"]), "--model", str(path),
                                     "--data", DATA, "--json", str(out)])
        checked, reported = json.loads(out.read_text()), run_of(report, path)["parity"]
        assert result.exit_code == (0 if checked["passed"] else 1)
        for key in ("agreement", "max_abs_error", "mean_abs_error", "reference_miou", "candidate_miou", "miou_diff"):
            assert reported[key] == pytest.approx(checked[key], rel=1e-6), key
        assert reported["failures"] == checked["failures"] and reported["passed"] == checked["passed"]
    out = tmp_path / "bench.json"
    result = runner.invoke(app, ["bench", str(release["fp32"]), str(release["broken"]), "--backend", "all", "--json",
                                 str(out), "--warmup", "0", "--iters", "1"])
    assert result.exit_code == 0, result.output
    keys = ("model", "format", "file_size_mb", "precision", "backend", "provider", "input_size", "network_input_shape")
    benched = [{k: r["settings"][k] for k in keys} for r in json.loads(out.read_text())["results"]]
    assert [{k: r["latency"]["settings"][k] for k in keys} for r in report["runs"]] == benched
    for run in report["runs"]:  # timings differ run to run; their statistics must still be self-consistent
        e2e = run["latency"]["end_to_end"]
        assert 0 < e2e["min_ms"] <= e2e["median_ms"] <= e2e["p99_ms"] <= e2e["max_ms"]
        assert run["latency"]["settings"]["iters"] == 3


def test_a_broken_int8_file_is_not_recommended_even_when_fastest(release: dict[str, Path]) -> None:
    report = load(release)
    broken = [i for i, r in enumerate(report["runs"]) if r["model"] == str(release["broken"])]
    assert broken and all(not report["runs"][i]["parity"]["passed"] for i in broken)
    assert report["recommendation"]["run"] not in broken
    assert report["recommendation"]["name"].startswith(release["fp32"].name)
    runs = copy.deepcopy(report["runs"])
    for index in broken:  # make the broken file by far the fastest
        runs[index]["latency"]["end_to_end"]["median_ms"] = 1e-6
    decision = recommend(runs)
    assert decision["run"] not in broken
    fastest_passing = min((i for i in range(len(runs)) if i not in broken),
                          key=lambda i: runs[i]["latency"]["end_to_end"]["median_ms"])
    assert decision["run"] == fastest_passing
    reasons = {o["run"]: o["reason"] for o in decision["others"]}
    assert all(reasons[i].startswith("fails parity: argmax agreement") for i in broken)
    for i, reason in reasons.items():
        if i not in broken:
            assert reason.startswith("slower: ")


class Numbers(HTMLParser):
    """Every element carrying data-json, with its text."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[dict[str, str], str]] = []
        self.open: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if "data-json" in attributes:
            self.found.append((attributes, ""))

    def handle_data(self, data: str) -> None:
        if self.found and self.found[-1][1] == "":
            self.found[-1] = (self.found[-1][0], data)


class Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback proxy that only counts what reaches it: any request the page makes."""

    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 -- http.server's name
        Recorder.requests.append(self.path)
        self.send_error(404)

    do_CONNECT = do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (.ci/run installs it with apt-get when run as root)")
    return path


# Chromium's own background services (clock, component updates, sign-in), which contact Google whatever the page
# holds; every other request reaching the proxy comes from the page.
BROWSER_SERVICES = ("clients2.google.com", "update.googleapis.com", "redirector.gvt1.com", "accounts.google.com")


def render(browser: str, page: Path) -> tuple[str, list[str]]:
    """The DOM after Chromium loaded the page, and the hosts the page asked for through a loopback proxy."""
    from urllib.parse import urlsplit

    Recorder.requests = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--proxy-server=http://127.0.0.1:{server.server_port}", "--proxy-bypass-list=<-loopback>",
             "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr[-2000:]
    hosts = [urlsplit(path).hostname if "://" in path else path.rsplit(":", 1)[0] for path in Recorder.requests]
    return result.stdout, [host for host in hosts if host not in BROWSER_SERVICES]


def test_the_page_renders_offline_and_shows_report_json(release: dict[str, Path], tmp_path: Path) -> None:
    browser = chromium()
    page = release["out"] / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    # the proxy sees what a page asks for: the same page without its CSP and with a remote image does
    leaky = tmp_path / "leaky.html"
    leaky.write_text(text.replace('http-equiv="Content-Security-Policy"', 'name="x"')
                     .replace("</body>", '<img src="http://fonts.example.test/x.png"></body>'))
    assert render(browser, leaky)[1] == ["fonts.example.test"]
    dom, requested = render(browser, page)
    assert requested == []
    assert "Release report" in dom and dom.count('src="data:image/png;base64,') == 3  # confusion + 2 examples
    report = load(release)
    numbers = Numbers()
    numbers.feed(dom)
    assert len(numbers.found) >= 9 * len(report["runs"])
    for attributes, shown in numbers.found:
        value = lookup(report, attributes["data-json"])
        assert shown == formatted(value, int(attributes["data-digits"]), float(attributes["data-scale"])), attributes
    assert report["recommendation"]["name"] in dom


def test_an_onnx_only_report_runs_without_torch_and_writes_markdown(release: dict[str, Path], tmp_path: Path) -> None:
    script = ("import sys; sys.modules['torch'] = None; from rdd_deploy.cli import run; "
              f"sys.argv = ['rdd-deploy', 'report', {str(release['fp32'])!r}, '--data', {DATA!r}, '--out', "
              f"{str(tmp_path)!r}, '--format', 'md', '--max-images', '2', '--examples', '1', '--warmup', '0', "
              "'--iters', '2']; run()")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["runs"][0]["parity"] is None and report["runs"][0]["is_reference"]
    assert report["images"] == 2 and report["card"]["checkpoint"] is None
    markdown = (tmp_path / "report.md").read_text()
    assert markdown in result.stdout and "| run | precision |" in markdown
    miou = formatted(report["runs"][0]["accuracy"]["miou"], 2, 100)
    assert f"| {report['runs'][0]['name']} | fp32 | " in markdown and f"| {miou} |" in markdown
    assert not (tmp_path / "report.html").exists()


def test_no_file_passing_parity_means_ship_none_and_exit_1(release: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(release["checkpoint"]), str(release["broken"]), "--data", DATA,
                                 "--out", str(tmp_path), "--max-images", "2", "--examples", "1", "--warmup", "0",
                                 "--iters", "2"])
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["recommendation"]["run"] is None and len(report["recommendation"]["others"]) == len(report["runs"])
    assert "Ship none of these files" in (tmp_path / "report.html").read_text()


def test_a_checkpoint_without_exported_files_is_one_line(release: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(release["checkpoint"]), "--data", DATA, "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "name the exported files" in str(result.exception)
    assert not (tmp_path / "r").exists()

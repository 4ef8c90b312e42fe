"""`intermission report`: the HTML report of a study paused and resumed through the deployment,
opened offline in headless Chromium; and the study read unchanged by optuna.visualization and
optuna-dashboard."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import threading
import urllib.request
import zlib
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState

from tests.conftest import PROJECT_ROOT
from tests.status_study import DrivenStudy, driven_study, intermission

# One driven study serves both files: run them in one test process.
pytestmark = pytest.mark.xdist_group("status-study")

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=20000",
]
PLOTLY_BLUE = (0x63, 0x6E, 0xFA)  # the first trace colour of plotly's default template


@pytest.fixture(scope="session")
def study(prefect_stack, tmp_path_factory) -> DrivenStudy:
    return driven_study(prefect_stack, tmp_path_factory.mktemp("status-study"))


@pytest.fixture(scope="session")
def report(study) -> Path:
    """The report, written by `intermission report` with the storage found from the flow run."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"report-{study.name}.html"
    done = intermission("report", study.name, "--output", str(path), env=study.env)
    assert done.returncode == 0, done.stderr
    assert str(path) in done.stdout
    return path


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed: apt-get install -y chromium (.ci/run does it)"
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", *args],
        capture_output=True, text=True, timeout=180,
    )


def _png_pixels(path: Path) -> np.ndarray:
    """The RGB pixels (height x width x 3) of an 8-bit truecolour PNG, as Chromium writes them."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6), header
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = row[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                row[i] = (row[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(row))
        previous = row
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width, bpp)[:, :, :3]


def _sections(dom: str) -> dict[str, str]:
    """The report's plot sections in the rendered DOM, by title."""
    parts = dom.split('<section class="plot">')[1:]
    return {re.search(r"<h2>(.*?)</h2>", p).group(1): p for p in parts}


def test_report_is_self_contained(report):
    document = report.read_text()
    assert not re.search(r"<script[^>]+src=", document), "a script is loaded from elsewhere"
    assert not re.search(r"<link[^>]+href=", document)
    assert document.count("Plotly.newPlot(") == 3


def test_plots_render_offline_in_chromium(report, study, tmp_path):
    rendered = _chromium("--dump-dom", report.as_uri(), tmp_path=tmp_path)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    sections = _sections(rendered.stdout)
    assert list(sections) == ["Learning curves", "Optimisation history", "Parameter importances"]
    for title, section in sections.items():
        assert 'class="main-svg"' in section, f"{title}: plotly drew no SVG"

    # Learning curves: one line per trial, and the pause marked.
    trials = study.completed.trials
    curves = sections["Learning curves"]
    assert len(re.findall(r'<g class="trace scatter', curves)) == len(trials) + 1
    for t in trials:
        assert f">#{t.number} ({t.state.name.lower()})<" in curves
    assert ">paused / crashed here<" in curves

    # Optimisation history: a point per finished trial; importances: one bar per parameter.
    history = sections["Optimisation history"]
    assert len(re.findall(r'<g class="trace scatter', history)) >= 2
    importances = sections["Parameter importances"]
    bars = re.search(r'<g class="trace bars".*?</g></g>', importances, re.S).group(0)
    assert bars.count('class="point"') == len(trials[0].params)


def test_screenshot_shows_the_plots(report, study, tmp_path):
    shot = ARTIFACTS / f"report-{study.name}.png"
    shot.unlink(missing_ok=True)
    done = _chromium(f"--screenshot={shot}", "--window-size=1280,1900", report.as_uri(), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    pixels = _png_pixels(shot)
    assert pixels.shape == (1900, 1280, 3)
    white = np.all(pixels == 255, axis=2).mean()
    assert white < 0.9, f"the screenshot is {white:.0%} white: the plots did not render"
    assert np.all(pixels == PLOTLY_BLUE, axis=2).any(), "no plotted trace colour in the screenshot"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_study_reads_with_standard_optuna_visualization(study):
    loaded = optuna.load_study(study_name=study.name, storage=study.storage)
    trials = loaded.get_trials()
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    curves = optuna.visualization.plot_intermediate_values(loaded)
    assert sorted(len(trace.x) for trace in curves.data) == sorted(len(t.intermediate_values) for t in trials)
    history = optuna.visualization.plot_optimization_history(loaded)
    assert len(history.data[0].x) == sum(t.state == TrialState.COMPLETE for t in trials)
    importances = optuna.visualization.plot_param_importances(loaded)
    assert sorted(importances.data[0].y) == sorted(trials[0].params)
    assert optuna.visualization.plot_slice(loaded).data


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_study_reads_with_optuna_dashboard(study):
    """optuna-dashboard's own API, served on loopback, shows the study's trials and curves."""
    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(study.storage), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/api/studies"

    def get(url: str) -> dict:
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.load(response)

    try:
        [summary] = [s for s in get(base)["study_summaries"] if s["study_name"] == study.name]
        shown = get(f"{base}/{summary['study_id']}")
        importances = get(f"{base}/{summary['study_id']}/param_importances")
    finally:
        server.shutdown()
        server.server_close()
    trials = study.completed.trials
    assert [t["number"] for t in shown["trials"]] == [t.number for t in trials]
    for mine, theirs in zip(shown["trials"], trials, strict=True):
        assert mine["state"].upper() == theirs.state.name
        assert {v["step"]: v["value"] for v in mine["intermediate_values"]} == theirs.intermediate_values
    assert sorted(i["name"] for i in importances["param_importances"][0]) == sorted(trials[0].params)

"""The Snakemake report and the results table as a reader sees them: rendered in a real headless browser (Debian's
chromium; skipped without it), over a copy of the shared finished run (tests/workflow/conftest.py).

The report is a React single-page app that builds its page from data embedded in report.html, so only the DOM
after its JavaScript ran (``--dump-dom``) or a screenshot shows that it displays: the file itself has an empty
``<div id="app">``. Clicks are scripts appended to a copy of the page (run 300 ms of virtual time after load);
each chromium run is a fresh process with an empty profile and no network, a few seconds."""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from smk_run import snakemake, tail

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium): the headless browser these "
                             "tests render the Snakemake report in")]

WINDOW = (1400, 1000)
# root (no sandbox), no GPU, nothing fetched or updated; virtual time: the page's timers and scripts run to the end
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--window-size={WINDOW[0]},{WINDOW[1]}")
BUDGET_MS = 10_000  # virtual time the page gets before chromium dumps or shoots it (it passes fast when idle)
LANDING_LINKS = ("results/table.html", "results/comparison.html", "results/plots/accuracy.png",
                 "results/plots/accuracy_cost.png", "results/plots/widths.png", "results/plots/gate_histograms.png",
                 "results/plots/gate_learning.png", "results/plots/training_curves.png")


def chromium(page: Path, *args: str, timeout: float = 90, budget_ms: int = BUDGET_MS) -> str:
    """Run headless chromium on ``page`` with ``args`` (--dump-dom, --screenshot=...); its stdout. The whole
    process group is killed past ``timeout`` (chromium starts a few helpers)."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--virtual-time-budget={budget_ms}",
                                 f"--user-data-dir={profile}", *args, page.as_uri()],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail(f"chromium took over {timeout} s on {page}")
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{err[-3000:]}"
    return out


def dump_dom(page: Path) -> str:
    return chromium(page, "--dump-dom")


def screenshot(page: Path, out: Path, budget_ms: int = BUDGET_MS) -> Path:
    """A PNG of the window once every compositor stage has drawn (not a frame the page had not painted yet)."""
    chromium(page, "--run-all-compositor-stages-before-draw", f"--screenshot={out}", budget_ms=budget_ms)
    assert out.is_file(), f"chromium wrote no screenshot of {page}"
    return out


def with_script(page: Path, script: str, out: Path) -> Path:
    """A copy of ``page`` (beside it, so relative paths stay) that runs ``script`` 300 ms after load."""
    source = page.read_text()
    end = source.rindex("</body>")
    hook = ("<script>window.addEventListener('load', function () { setTimeout(function () {\n"
            f"{script}\n}}, 300); }});</script>\n")
    out.write_text(source[:end] + hook + source[end:])
    return out


def app_html(dom: str) -> str:
    """What React rendered into <div id="app"> (the report's scripts follow it)."""
    assert '<div id="app">' in dom, "no <div id=\"app\"> in the page"
    return dom.split('<div id="app">', 1)[1].split("<script", 1)[0]


def visible_text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def body_data(dom: str, name: str):
    """The JSON a script of with_script left in <body data-NAME="...">."""
    match = re.search(rf'<body[^>]*\sdata-{name}="([^"]*)"', dom)
    assert match, f"the page's script left no data-{name} on <body> (did it throw?)"
    return json.loads(html.unescape(match.group(1)))


class _Tables(HTMLParser):
    """The cell texts of every <table>: a list of tables, each a list of rows (header row first)."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(dom: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(dom)
    return parser.tables


@pytest.fixture(scope="module")
def report(finished_run, tmp_path_factory) -> Path:
    """report.html of a copy of the finished tiny run (its workdir: ``report.parent``)."""
    workdir = tmp_path_factory.mktemp("report_browser") / "wf"
    shutil.copytree(finished_run.workdir, workdir, symlinks=True)
    result = snakemake(workdir, "--report", "report.html", "--configfile", "tiny.yaml", timeout=600)
    assert result.returncode == 0, tail(result.stdout)
    return workdir / "report.html"


def test_the_report_renders_its_landing_page_with_the_tables_and_plots(report):
    assert re.search(r'<div id="app">\s*</div>', report.read_text()), "report.html is expected to render in JS"
    text = visible_text(app_html(dump_dom(report)))
    for words in ("What to look at first", "dataset of this run: digits", "table.html", "comparison.html",
                  "accuracy.png", "accuracy_cost.png", "widths.png", "gate_histograms.png", "gate_learning.png",
                  "training_curves.png", "Plots", "Tables", "Workflow", "Statistics", "mean ± std",
                  "one test image is 0.28% of top-1 (360 test images), so differences of one to three images are "
                  "noise."):
        assert words in text, f"{words!r} not on the rendered landing page: {text[:1500]}"
    assert "System Message" not in text, f"reStructuredText errors on the landing page: {text[:3000]}"


def test_every_link_on_the_landing_page_names_a_result_of_the_report(report):
    page = with_script(report, """
        var paths = Array.from(document.querySelectorAll('#app a')).map(function (a) {
          var m = /^javascript:app\\.showResultInfo\\('(.*)'\\)$/.exec(a.getAttribute('href') || '');
          return m && m[1]; }).filter(Boolean);
        document.body.dataset.links = JSON.stringify({paths: paths, missing: paths.filter(function (p) {
          return !(p in results); })});
    """, report.with_name("links.html"))
    links = body_data(dump_dom(page), "links")
    assert set(links["paths"]) >= set(LANDING_LINKS), links["paths"]
    assert links["missing"] == [], f"landing-page links to no result of the report: {links['missing']}"


def _open(path: str) -> str:
    """Script: click the landing page's link to ``path``, then the eye button of its result info (as a reader)."""
    return f"""
        var link = Array.from(document.querySelectorAll('#app a')).filter(function (a) {{
          return a.getAttribute('href') === "javascript:app.showResultInfo('{path}')"; }})[0];
        link.click();
        setTimeout(function () {{
          document.querySelector('#app a[iconname="eye"]').click();
          document.body.dataset.opened = JSON.stringify(true);
        }}, 300);
    """


def _embedded(fragment: str, tag: str, name: str) -> bytes:
    match = re.search(rf'<{tag} src="data:[\w/+.-]+;charset=utf8;filename={re.escape(name)};base64,'
                      r'([A-Za-z0-9+/=]+)"', fragment)
    assert match, f"no <{tag}> showing {name} in the rendered report"
    return base64.b64decode(match.group(1))


def test_the_landing_page_link_opens_the_results_table_in_the_report(report):
    dom = dump_dom(with_script(report, _open("results/table.html"), report.with_name("open_table.html")))
    assert body_data(dom, "opened") is True
    app = app_html(dom)
    assert "Every training run grouped over seeds" in visible_text(app)  # the result info beside it
    # the summarize job's parameters, printed beside the table, are short: no per-run chain of benchmark files
    assert "benchmarks/" not in visible_text(app)
    assert _embedded(app, "iframe", "table.html") == (report.parent / "results" / "table.html").read_bytes()


def test_the_landing_page_link_opens_the_accuracy_plot_in_the_report(report, tmp_path):
    page = with_script(report, _open("results/plots/accuracy.png"), report.with_name("open_accuracy.html"))
    app = app_html(dump_dom(page))
    assert _embedded(app, "img", "accuracy.png") == (report.parent / "results/plots/accuracy.png").read_bytes()
    _check_not_blank(screenshot(page, tmp_path / "accuracy_in_report.png"))


def test_table_html_shows_one_row_per_table_csv_row_with_top1_mean_and_std(report):
    results = report.parent / "results"
    table = pd.read_csv(results / "table.csv")
    [rendered] = tables(dump_dom(results / "table.html"))
    header, rows = rendered[0], rendered[1:]
    top1 = header.index("top-1 (%) mean ± std")
    assert len(rows) == len(table)
    assert sorted(r[top1] for r in rows) == sorted(  # one seed: the value alone (no spread exists)
        f"{100 * r.top1_mean:.2f}" + (f" ± {100 * r.top1_std:.2f}" if r.n > 1 else "") for r in table.itertuples())
    assert sorted(r[header.index("method")] for r in rows) == sorted(table["method"])


def test_table_html_sorts_by_a_click_on_a_header_and_keeps_top1_in_view(report):
    results = report.parent / "results"
    page = with_script(results / "table.html", """
        var table = document.querySelector('table'), ths = Array.from(table.tHead.rows[0].cells);
        var names = ths.map(function (th) { return th.textContent.trim(); });
        var col = names.indexOf('top-1 (%) mean ± std'), th = ths[col];
        var column = function () { return Array.from(table.tBodies[0].rows).map(function (r) {
          return r.cells[col].textContent; }); };
        var align = function (name) { return getComputedStyle(table.tBodies[0].rows[0].cells[names.indexOf(name)])
          .textAlign; };
        th.click(); var up = column(); th.click(); var down = column();
        document.body.dataset.sort = JSON.stringify({up: up, down: down, top1_right: th.getBoundingClientRect().right,
          title: th.title, method: align('method'), top1: align('top-1 (%) mean ± std')});
    """, results / "sort_table.html")
    got = body_data(dump_dom(page), "sort")
    values = [float(v.split(" ± ")[0]) for v in got["up"]]
    assert len(values) == len(pd.read_csv(results / "table.csv")) and values == sorted(values)
    assert got["down"] == got["up"][::-1] and got["title"] == "click to sort"
    assert (got["method"], got["top1"]) == ("left", "right")  # text left, numbers right
    # headers wrap: top-1 in view of a 1400 px window beside the report's sidebar (1/5 of it)
    assert got["top1_right"] < 0.8 * WINDOW[0], got["top1_right"]


def _check_not_blank(png: Path) -> np.ndarray:
    from PIL import Image  # matplotlib's dependency

    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == WINDOW, (image.format, image.size)
        pixels = np.asarray(image.convert("RGB"))
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    inked = (pixels.min(axis=2) < 200).mean()
    assert colours > 50 and inked > 0.05, f"{png.name} looks blank: {colours} colours, {inked:.1%} not white"
    return pixels


def test_a_screenshot_of_the_report_is_a_styled_non_blank_png_of_the_window(report, tmp_path):
    # the report's styles are made in the page by its bundled Tailwind runtime: on a loaded machine headless chromium
    # has shot the window before they applied (twice in CI, each time in a screenshot otherwise drawn). Up to three
    # shots, each checked whole and given more virtual time; CSS that never applies fails all three
    for attempt, budget_ms in enumerate((BUDGET_MS, 3 * BUDGET_MS, 6 * BUDGET_MS)):
        pixels = _check_not_blank(screenshot(report, tmp_path / f"report{attempt}.png", budget_ms))
        sidebar = pixels[150:700, 20:200].mean()
        if sidebar < 140:
            break
    assert sidebar < 140, f"the sidebar is not the report's dark slate (mean {sidebar:.0f}): its CSS did not apply"

"""`clgemm report --paper`: the technical report builds from the committed records alone,
embeds its plots and links every figure to a record that exists."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clgemm.cli import main
from clgemm.report.records import load_records

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("matplotlib")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.captions: list[list[str]] = []  # hrefs inside each figcaption
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a["href"])
            if self._in_caption:
                self.captions[-1].append(a["href"])
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "figcaption":
            self._in_caption = True
            self.captions.append([])

    def handle_endtag(self, tag):
        if tag == "figcaption":
            self._in_caption = False


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    assert main(["report", "--paper", "--records", str(ROOT / "records"),
                 "--lab", str(ROOT / "research/breakthrough_lab"), "-o", str(out)]) == 0
    page = out / "report.html"
    parser = _Page()
    parser.feed(page.read_text())
    return out, page.read_text(), parser


def test_every_link_resolves(paper):
    out, _, parsed = paper
    assert parsed.hrefs
    for href in parsed.hrefs:
        assert (out / href).resolve().exists(), href


def test_plots_are_embedded_and_each_links_its_record(paper):
    out, _, parsed = paper
    assert len(parsed.images) >= 4
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert len(parsed.captions) == len(parsed.images)
    for hrefs in parsed.captions:
        assert len(hrefs) == 1
        assert (out / hrefs[0] / "record.json").resolve().exists()


def test_the_report_covers_every_current_record_and_section(paper):
    _, text, _ = paper
    for r in load_records(ROOT / "records"):
        if r.current:
            assert r.id in text and r.command_now().split()[0] in text
    for heading in ("What the system is", "Method", "KPI figures per device", "Research tracks",
                    "Negative results", "Threats to validity", "How to reproduce"):
        assert heading in text
    # the H100's KPI table is computed from its artifact: the 3xTF32 lane's peak at 2048
    assert re.search(r"<td>clgemm-3xtf32</td><td>41\.6</td><td>56\.0</td>", text)


def test_paper_refuses_artifact_arguments(tmp_path, capsys):
    artifact = next(ROOT.glob("records/nvidia-h100/*/model-*.json"))  # a real artifact
    assert main(["report", "--paper", str(artifact), "-o", str(tmp_path)]) == 2
    assert "--paper" in capsys.readouterr().err

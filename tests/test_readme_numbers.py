"""Every measured figure the README quotes is in the committed result its section links (issue 23).

A figure is a decimal (`7.27`, `0.21x`), a power of ten (`2.7e-9`, `6e-8`) or a count with thousands separators
(`6,991`), in prose or tables (code blocks are examples, not results; plain integers are settings such as `1024 px`;
versions such as `Python 3.11` or `1.6.2` are not figures).
A README section (up to the next heading) that quotes figures must link a `benchmarks/results/` file, and each figure
must stand in that file (its `.md`, else its `.json`): a table row's figures as written, together in one line that
names the row; a prose figure as written or as a recorded number rounded to the figure's precision (`7.27` for a
recorded 7.269).
"""

from __future__ import annotations

import json
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RESULT_LINK = re.compile(r"benchmarks/results/([\w.-]+?)\.(?:md|json)\b")
FIGURE = re.compile(r"(?<![\w.,-])(?<!Python )(\d+\.\d+(?:e-\d+)?|\d+e-\d+|\d{1,3}(?:,\d{3})+)x?(?![\w]|[.,]\d)")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def sections(text: str) -> list[tuple[str, str]]:
    """(heading, prose) pairs of a markdown text, fenced code removed."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    parts = re.split(r"^(#{1,6} .*)$", prose, flags=re.M)
    return [("(top)", parts[0])] + list(zip(parts[1::2], parts[2::2]))


def _written(figure: str, text: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(figure)}(?![\w]|[.,]\d)", text) is not None


def _recorded(figure: str, text: str) -> bool:
    """`figure` stands in `text` as written, or a number there rounds to it at the figure's precision."""
    if _written(figure, text):
        return True
    value = float(figure.replace(",", ""))
    if "e" in figure:
        digits = len(figure.split("e")[0].replace(".", ""))
        rounded = lambda n: float(f"{n:.{digits - 1}e}")  # noqa: E731
    else:
        decimals = len(figure.split(".")[1]) if "." in figure else 0
        rounded = lambda n: float(f"{n:.{decimals}f}")  # noqa: E731
    return any(rounded(float(n)) == value for n in NUMBER.findall(text))


def _result_text(name: str, root: pathlib.Path) -> str | None:
    """The linked result as a reader sees it: its markdown, or its JSON where there is no markdown."""
    for ext in ("md", "json"):
        path = root / "benchmarks" / "results" / f"{name}.{ext}"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def unrecorded(text: str, root: pathlib.Path = REPO) -> list[str]:
    """What is wrong: sections quoting figures without a result link, figures not in the linked results.

    A table row's figures must stand as written in one line of a linked result that also names the row (its first
    cell), so that a figure cannot be borrowed from another row; a prose figure must stand in a linked result.
    """
    problems = []
    for heading, prose in sections(text):
        if not FIGURE.search(prose):
            continue
        names = sorted(set(RESULT_LINK.findall(prose)))
        results = {name: _result_text(name, root) for name in names}
        problems += [
            f"{heading}: links benchmarks/results/{n}, which is not committed" for n, t in results.items() if t is None
        ]  # noqa: E501
        texts = [t for t in results.values() if t is not None]
        if not names:
            problems.append(f"{heading}: quotes {FIGURE.findall(prose)} but links no benchmarks/results file")
            continue
        for line in prose.splitlines():
            figures = FIGURE.findall(line)
            if not figures:
                continue
            if line.startswith("|"):
                name = line.split("|")[1].strip()
                lines = [x for t in texts for x in t.splitlines() if name in x]
                if not any(all(_written(f, x) for f in figures) for x in lines):
                    problems.append(
                        f"{heading}: row {name!r}: {figures} do not stand together in a result line naming it"
                    )  # noqa: E501
            else:
                problems += [
                    f"{heading}: {f} is not in {names}" for f in figures if not any(_recorded(f, t) for t in texts)
                ]  # noqa: E501
    return problems


def test_every_readme_figure_is_in_its_linked_result():
    text = README.read_text(encoding="utf-8")
    assert len(re.findall(FIGURE, re.sub(r"```.*?```", "", text, flags=re.S))) >= 20  # the parity table and more
    assert unrecorded(text) == []


def test_parity_table_links_the_parity_result():
    """The numbers of "Proved against the official code" come from benchmarks/parity.py's result."""
    heading, prose = next(s for s in sections(README.read_text(encoding="utf-8")) if "official code" in s[0])
    assert RESULT_LINK.findall(prose) == ["parity"], heading
    result = json.loads((REPO / "benchmarks" / "results" / "parity.json").read_text())
    assert result["all_within_tolerance"] is True
    assert set(result["methods"]) >= {"mv_adapter", "i2v_adapter", "sara", "sam_adapter", "lame"}


def test_a_figure_missing_from_its_result_is_reported(tmp_path):
    """The check can fail: a changed figure, a figure borrowed from another row, a section without a link and a
    missing result are all caught."""
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "run.md").write_text(
        "peak 7.2691 GiB, ratio 0.21, error 2.66e-09, 6,991 entries\n| A-Net | 2.1e-6; 6,991 |\n| B-Net | 1.2e-6 |\n"
    )
    good = (
        "## A\n\nSee [`run.md`](benchmarks/results/run.md): 7.27 GiB (0.21x), 2.7e-9, 6,991 entries.\n\n"
        "| net | difference |\n|---|---|\n| A-Net | 2.1e-6 (6,991 entries) |\n| B-Net | 1.2e-6 |\n"
    )
    assert unrecorded(good, tmp_path) == []
    assert unrecorded(good.replace("7.27", "7.28"), tmp_path) == ["## A: 7.28 is not in ['run']"]
    assert unrecorded(good.replace("2.7e-9", "2.6e-9"), tmp_path) == ["## A: 2.6e-9 is not in ['run']"]
    borrowed = unrecorded(good.replace("| A-Net | 2.1e-6", "| A-Net | 1.2e-6"), tmp_path)
    assert borrowed == ["## A: row 'A-Net': ['1.2e-6', '6,991'] do not stand together in a result line naming it"]
    unlinked = unrecorded("## B\n\nIt takes 1.11x.\n", tmp_path)
    assert unlinked == ["## B: quotes ['1.11'] but links no benchmarks/results file"]
    missing = unrecorded(good.replace("run.md", "gone.md"), tmp_path)
    assert missing[0] == "## A: links benchmarks/results/gone, which is not committed"
    assert unrecorded("## C\n\n```python\nx = 0.7\n```\nSD1.5, pysodmetrics 1.6.2, 1024 px\n", tmp_path) == []

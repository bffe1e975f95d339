"""docs/PERFORMANCE.md is stitched from docs/perf/ by bench/run_all.py: analysis written
into the stitched file alone would be lost at the next run of the benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run_all


def _body(text: str) -> str:
    """The sections, without the header (the stitching time and the machine)."""
    return text[text.index("\n## ") :]


def test_the_performance_document_is_its_section_files_stitched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stitched = tmp_path / "PERFORMANCE.md"
    monkeypatch.setattr(run_all, "OUT", stitched)
    run_all.stitch()
    assert _body(run_all.ROOT.joinpath("docs", "PERFORMANCE.md").read_text()) == _body(
        stitched.read_text()
    ), "edit docs/perf/<bench>.notes.md, then `python -m bench.run_all --stitch`"

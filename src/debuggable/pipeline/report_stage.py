"""Stage ``report``: the static HTML report over everything the run produced."""

from __future__ import annotations

from typing import Any

from debuggable.pipeline.stage import StageContext
from debuggable.report import build_report
from debuggable.run import RunDirectory


def run_report_stage(run: RunDirectory, ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    index = build_report(run)
    sections = [name for name, _ in _listed(run)]
    return {"index": str(index.relative_to(run.path)), "stages_reported": sections}, ["report/index.html"]


def _listed(run: RunDirectory):
    for name, rec in run.manifest["stages"].items():
        if rec.get("status") == "done" and name != "report":
            yield name, rec

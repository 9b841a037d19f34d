import numpy as np

from debuggable.report import SectionBuilder, build_report, section
from debuggable.report import html as report_html
from debuggable.report import plots
from debuggable.run import RunConfig, RunDirectory


def test_report_lists_stages_escapes_text_and_writes_figures(tmp_path):
    run = RunDirectory.create(tmp_path / "run", RunConfig())
    run.begin("custom", "custom", "h")
    run.finish("custom", {"value": 0.25, "note": "<b>not html</b>"}, ["custom/x"])

    @section("custom", "Custom stage", order=99, stage="custom")
    def custom(run, out: SectionBuilder):
        s = run.summary("custom")
        out.paragraph(s["note"])
        out.table(["key", "value"], [["value", s["value"]]])
        out.figure(lambda p: plots.histogram(np.arange(10.0), p, xlabel="x"), "hist", "a histogram")

    @section("never", "Never shown", order=100, stage="missing-stage")
    def never(run, out):
        out.paragraph("should not appear")

    try:
        index = build_report(run)
    finally:
        report_html._SECTIONS[:] = [s for s in report_html._SECTIONS if s.key not in ("custom", "never")]
    page = index.read_text()
    assert "Custom stage" in page and "Never shown" not in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page  # escaped, never injected
    assert "<td class=\"num\">0.25</td>" in page
    assert (index.parent / "figures" / "hist.png").stat().st_size > 1000
    assert "Run overview" in page and "custom/x" in page


def test_failed_report_leaves_previous_report_intact(tmp_path):
    run = RunDirectory.create(tmp_path / "run", RunConfig())
    first = build_report(run).read_text()

    @section("boom", "Boom", order=1, stage=None)
    def boom(run, out):
        raise RuntimeError("section failed")

    try:
        try:
            build_report(run)
        except RuntimeError:
            pass
    finally:
        report_html._SECTIONS[:] = [s for s in report_html._SECTIONS if s.key != "boom"]
    assert (run.path / "report" / "index.html").read_text() == first
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".report")) == []

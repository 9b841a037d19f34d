"""The static HTML report (Jinja2) and its plots; reads a run directory, writes ``report/``."""

from debuggable.report.html import SectionBuilder, build_report, section

__all__ = ["SectionBuilder", "build_report", "section"]

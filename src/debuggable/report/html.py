"""The static HTML report: one page, one section per stage, figures as PNG files.

Sections register themselves with :func:`section`; :func:`build_report` reads the
run directory (never writes outside ``report/``), calls every registered section
whose stage has a summary, and writes ``report/index.html`` plus
``report/figures/*.png`` atomically (the whole ``report/`` directory is built under a
temporary name and renamed into place).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import jinja2
from markupsafe import Markup, escape

from debuggable import __version__
from debuggable.run import RunDirectory, atomic_directory

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("debuggable.report", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


@dataclass
class SectionBuilder:
    """Accumulates one section's HTML; everything passed in is escaped."""

    figures_dir: Path
    parts: list[str] = field(default_factory=list)

    def paragraph(self, text: str, *, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{escape(text)}</p>")

    def heading(self, text: str) -> None:
        self.parts.append(f"<h3>{escape(text)}</h3>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table; floats are shown with 4 significant digits, ``Markup`` kept as is."""

        def cell(v: Any) -> tuple[Any, bool]:
            if isinstance(v, bool):
                return str(v), False
            if isinstance(v, float):
                return f"{v:.4g}", True
            return v, isinstance(v, int)

        self.parts.append(_ENV.get_template("table.html").render(header=header, rows=[[cell(c) for c in r] for r in rows]))

    def figure(self, draw: Callable[[Path], Path], name: str, caption: str) -> None:
        """Draw a figure with ``draw(path)`` into ``figures/<name>.png`` and show it."""
        path = draw(self.figures_dir / f"{name}.png")
        rel = f"figures/{path.name}"
        self.parts.append(
            f'<figure><img src="{escape(rel)}" alt="{escape(caption)}"><figcaption>{escape(caption)}</figcaption></figure>'
        )

    def figures_row(self) -> "_Row":
        return _Row(self)

    def code(self, text: str, *, summary: str | None = None) -> None:
        """Preformatted text; folded behind ``summary`` when given."""
        block = f"<pre>{escape(text)}</pre>"
        if summary is not None:
            block = f"<details><summary>{escape(summary)}</summary>{block}</details>"
        self.parts.append(block)

    def html(self) -> Markup:
        return Markup("\n".join(self.parts))


class _Row:
    """Context manager that lays the figures drawn inside it side by side."""

    def __init__(self, builder: SectionBuilder):
        self.builder = builder

    def __enter__(self) -> SectionBuilder:
        self.start = len(self.builder.parts)
        return self.builder

    def __exit__(self, *exc) -> None:
        inner = self.builder.parts[self.start :]
        del self.builder.parts[self.start :]
        self.builder.parts.append('<div class="figures">' + "".join(inner) + "</div>")


SectionFn = Callable[[RunDirectory, SectionBuilder], None]


@dataclass(frozen=True)
class _Registered:
    key: str
    title: str
    order: int
    stage: str | None
    fn: SectionFn


_SECTIONS: list[_Registered] = []


def section(key: str, title: str, *, order: int, stage: str | None) -> Callable[[SectionFn], SectionFn]:
    """Register a report section.

    Args:
        key: the HTML anchor.
        title: the section heading.
        order: sections appear in increasing order.
        stage: the stage whose summary must exist for the section to appear
            (``None``: always shown).
    """

    def register(fn: SectionFn) -> SectionFn:
        _SECTIONS[:] = [s for s in _SECTIONS if s.key != key]
        _SECTIONS.append(_Registered(key, title, order, stage, fn))
        _SECTIONS.sort(key=lambda s: s.order)
        return fn

    return register


def build_report(run: RunDirectory, *, directory: str = "report") -> Path:
    """Render ``RUN/<directory>/index.html`` from the run's artifacts; returns its path."""
    # Sections live in their own module and register on import.
    from debuggable.report import sections as _sections  # noqa: F401

    target = run.path / directory
    with atomic_directory(target) as tmp:
        figures = tmp / "figures"
        figures.mkdir()
        rendered = []
        for s in _SECTIONS:
            if s.stage is not None and run.summary(s.stage) is None:
                continue
            builder = SectionBuilder(figures)
            s.fn(run, builder)
            rendered.append({"key": s.key, "title": s.title, "html": builder.html()})
        page = _ENV.get_template("report.html").render(
            title=run.config.report.title,
            run_path=str(run.path.resolve()),
            version=__version__,
            built=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            sections=rendered,
        )
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return target / "index.html"

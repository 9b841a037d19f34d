"""What a pipeline stage is, and the loop that runs stages on a run directory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from debuggable.run import RunDirectory


@dataclass
class StageContext:
    """State shared by the stages of one invocation.

    Attributes:
        device: torch device for models and extraction.
        progress: show progress bars.
        log: where one-line messages go.
        cache: objects built by one stage and reused by the next in the same process
            (e.g. the data splits); never persisted.
    """

    device: torch.device
    progress: bool = True
    log: Callable[[str], None] = print
    cache: dict[str, Any] = field(default_factory=dict)


StageFn = Callable[[RunDirectory, StageContext], tuple[dict[str, Any], list[str]]]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    Attributes:
        name: the stage's name (manifest key, CLI sub-command).
        directory: its directory inside the run (holds ``summary.json``).
        sections: config sections whose change makes the stage stale.
        depends_on: stages whose rerun makes this one stale.
        fn: does the work; returns ``(summary, outputs)`` where outputs are paths
            relative to the run directory.
        applies: whether the stage has anything to do under a config.
        help: one line for ``debuggable --help``.
    """

    name: str
    directory: str
    sections: tuple[str, ...]
    depends_on: tuple[str, ...]
    fn: StageFn
    applies: Callable[[RunDirectory], bool] = lambda run: True
    help: str = ""

    def config_hash(self, run: RunDirectory) -> str:
        from debuggable.pipeline.user_models import model_files_digest

        digest = run.config.section_hash(*self.sections)
        files = model_files_digest(run, self.sections)  # a user's weights file is part of the model
        if files is None:
            return digest
        import hashlib

        return hashlib.sha256(f"{digest}|{files}".encode()).hexdigest()[:16]

    def status(self, run: RunDirectory) -> str:
        return run.status(self.name, self.config_hash(run), self.depends_on)


def run_stage(stage: Stage, run: RunDirectory, ctx: StageContext, *, force: bool = False) -> dict[str, Any] | None:
    """Run ``stage`` unless it is already done for this config; returns its summary.

    A stage that was killed (``partial``) or whose inputs changed (``stale``) is redone;
    the stage itself decides how much of its partial output it can reuse (extraction
    resumes chunk by chunk).
    """
    if not stage.applies(run):
        return None
    status = stage.status(run)
    if status == "done" and not force:
        ctx.log(f"[{stage.name}] up to date, skipped")
        return run.summary(stage.name)
    if status in ("partial", "stale"):
        ctx.log(f"[{stage.name}] {status}: redoing")
    t0 = time.perf_counter()
    run.begin(stage.name, stage.directory, stage.config_hash(run))
    summary, outputs = stage.fn(run, ctx)
    run.finish(stage.name, summary, outputs)
    ctx.log(f"[{stage.name}] done in {time.perf_counter() - t0:.1f} s -> {run.path / stage.directory}")
    return summary

"""What a pipeline stage is, and the loop that runs stages on a run directory."""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from debuggable.run import RunDirectory

if TYPE_CHECKING:
    import torch


class Deferred:
    """A function named ``"package.module:function"``, imported at its first call.

    The stage table names every stage's work and checks this way, so that reading it
    (``debuggable status``, ``--help``) imports neither torch nor the methods.
    """

    def __init__(self, target: str):
        self.target = target
        self._fn: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        if self._fn is None:
            module, name = self.target.split(":")
            self._fn = getattr(importlib.import_module(module), name)
        return self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Deferred({self.target!r})"


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
    #: set by :func:`run_stage`: the stage runs because ``--force`` asked (redo it all)
    force: bool = False
    #: ``extract --repair``: recompute only the damaged feature-store chunks
    repair: bool = False
    #: ``fit`` under torchrun: the ``torch.distributed`` group the path is solved over
    #: (each rank reads its own rows of the store; rank 0 writes the path)
    process_group: Any = None


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
        volatile: ``fnmatch`` patterns (relative to ``directory``) of files that keep
            changing after the stage finished (a database, later scores): left out of
            its integrity record.
        check: validates what the stage needs before it starts (raises
            :class:`DebuggableError`); the manifest is not touched when it fails.
    """

    name: str
    directory: str
    sections: tuple[str, ...]
    depends_on: tuple[str, ...]
    fn: StageFn
    applies: Callable[[RunDirectory], bool] = lambda run: True
    help: str = ""
    check: Callable[[RunDirectory, "StageContext"], None] | None = None
    volatile: tuple[str, ...] = ()

    def config_hash(self, run: RunDirectory) -> str:
        from debuggable.pipeline.user_models import model_files_digest

        digest = run.config.section_hash(*self.sections)
        files = model_files_digest(run, self.sections)  # a user's weights file is part of the model
        if files is None:
            return digest
        import hashlib

        return hashlib.sha256(f"{digest}|{files}".encode()).hexdigest()[:16]

    def status(self, run: RunDirectory) -> str:
        """``done``, ``partial``, ``stale``, ``missing`` or ``corrupt`` (done, but a file it
        wrote is missing or has another size than recorded: a ``stat`` per file)."""
        status = run.status(self.name, self.config_hash(run), self.depends_on)
        if status == "done":
            from debuggable.pipeline.integrity import check_stage

            if not check_stage(run, self.name, full=False).ok:
                return "corrupt"
        return status


#: Stages whose command is not their name.
_COMMANDS = {"explain_tests": "explain-tests", "studies": "study create"}


def stage_command(stage: str) -> str:
    """The ``debuggable`` sub-command that runs ``stage``."""
    return _COMMANDS.get(stage, stage)


def _rerun_hint(run: RunDirectory, stage: Stage) -> str:
    import shlex

    return f"then rerun `debuggable {stage_command(stage.name)} {shlex.quote(str(run.path))}` to resume"


def run_stage(stage: Stage, run: RunDirectory, ctx: StageContext, *, force: bool = False) -> dict[str, Any] | None:
    """Run ``stage`` unless it is already done for this config; returns its summary.

    A stage that was killed (``partial``) or whose inputs changed (``stale``) is redone;
    the stage itself decides how much of its partial output it can reuse (extraction
    resumes chunk by chunk).
    """
    from debuggable.features.store import StoreIntegrityError
    from debuggable.pipeline.integrity import check_stage, repair_command
    from debuggable.run.faults import io_error

    if not stage.applies(run):
        return None
    status = stage.status(run)
    if status == "done" and not force:
        ctx.log(f"[{stage.name}] up to date, skipped")
        return run.summary(stage.name)
    if status == "corrupt" and not force:
        raise check_stage(run, stage.name, full=False).error()
    if status in ("partial", "stale", "corrupt"):
        ctx.log(f"[{stage.name}] {status}: " + ("repairing" if ctx.repair and stage.name == "extract" else "redoing"))
    t0 = time.perf_counter()
    ctx.force = force
    try:
        if stage.check is not None:
            stage.check(run, ctx)  # nothing written yet: a failure leaves the manifest as it was
        run.begin(stage.name, stage.directory, stage.config_hash(run))
        summary, outputs = stage.fn(run, ctx)
        run.finish(stage.name, summary, outputs, stage.volatile)
    except StoreIntegrityError as exc:
        raise exc.with_repair(repair_command(run, "extract")) from None
    except OSError as exc:
        # Disk full, permission, read-only: the stage stays partial and resumes on a rerun.
        raise io_error(exc, run.path / stage.directory, then=_rerun_hint(run, stage)) from None
    finally:
        ctx.force = False
    ctx.log(f"[{stage.name}] done in {time.perf_counter() - t0:.1f} s -> {run.path / stage.directory}")
    return summary

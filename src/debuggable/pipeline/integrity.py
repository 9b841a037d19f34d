"""Is a finished stage's output still what it wrote? ``debuggable verify`` and ``status``.

Two records make a run checkable:

* ``manifest.json``: for every finished stage, the size and CRC-32C of each file under
  its directory (``debuggable.run.integrity``);
* the feature stores (stage ``extract``): the size and CRC-32C of each chunk file in its
  done-marker (``debuggable.features.FeatureStore.verify``).

:func:`check_stage` compares a stage's directory with them, by size only (``full=False``:
a ``stat`` per file, done by ``status`` and before any stage trusts another) or by
checksum (``full=True``: ``debuggable verify`` reads every file). Each problem names the
file; :func:`repair_command` is the command that mends the stage.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from debuggable.errors import DebuggableError
from debuggable.features import FeatureStore
from debuggable.features.store import StoreIntegrityError
from debuggable.run import RunDirectory
from debuggable.run.integrity import FILES_KEY, check_files

#: Sub-command names that differ from the stage names.


class RunIntegrityError(DebuggableError):
    """A finished stage's file is missing or differs from what the stage recorded."""

    def __init__(self, stage: str, file: Path, problem: str, repair: str):
        self.stage, self.file, self.problem, self.repair = stage, file, problem, repair
        super().__init__(f"stage {stage!r}: {file} is {problem}; repair it with `{repair}`.")


@dataclass
class StageCheck:
    """What :func:`check_stage` found for one stage.

    Attributes:
        stage: the stage name.
        files: files checked (recorded files plus feature-store chunk files).
        problems: ``(file, what is wrong)`` for each damaged file.
        notes: what could not be checked (output written before checksums were recorded).
        repair: the command that mends the stage.
    """

    stage: str
    files: int = 0
    problems: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repair: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def error(self) -> RunIntegrityError:
        """The first problem as an error naming the file and the repair command."""
        file, problem = self.problems[0]
        more = f" (and {len(self.problems) - 1} more damaged files: `debuggable verify` lists them)" if len(self.problems) > 1 else ""
        return RunIntegrityError(self.stage, file, problem + more, self.repair)


def repair_command(run: RunDirectory, stage: str) -> str:
    """The command that mends ``stage``'s damaged output: ``extract --repair`` recomputes
    only the damaged feature-store chunks; any other stage is redone (``--force``)."""
    from debuggable.pipeline.stage import stage_command

    cmd = stage_command(stage)
    run_arg = shlex.quote(str(run.path))
    return f"debuggable {cmd} {run_arg} --repair" if stage == "extract" else f"debuggable {cmd} {run_arg} --force"


def _store_dirs(run: RunDirectory, directory: str) -> list[Path]:
    root = run.path / directory
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir()) if p.is_dir() and (p / "zarr.json").is_file()]


def check_stage(run: RunDirectory, stage: str, full: bool = True) -> StageCheck:
    """Check a finished stage's files against the records (see the module docstring)."""
    out = StageCheck(stage, repair=repair_command(run, stage))
    rec = run.stage_record(stage) or {}
    if rec.get("status") != "done":
        return out
    record = rec.get(FILES_KEY)
    if record is None:
        out.notes.append("finished before checksums were recorded (redo it with --force to record them)")
    else:
        out.files += len(record)
        out.problems += [(p.path, p.problem) for p in check_files(run.path, record, full=full)]
    for path in _store_dirs(run, rec.get("dir", stage)):
        try:
            store = FeatureStore(path)
            splits = store.splits()
        except (StoreIntegrityError, DebuggableError, ValueError) as exc:
            out.problems.append((path / "zarr.json", f"unreadable ({exc})"))
            continue
        for split in splits:
            try:
                check = store.verify(split, full=full)
            except StoreIntegrityError as exc:
                out.problems.append((exc.file, exc.problem))
                continue
            out.files += check.checked * len(store.layout(split).arrays)
            out.problems += [(p.file, p.problem) for p in check.problems]
            if check.unchecksummed:
                rel = path.relative_to(run.path) / split
                out.notes.append(f"{rel}: {check.unchecksummed} of {check.n_chunks} chunks were written before "
                                 "checksums were recorded, so only their presence and size are checked "
                                 f"(`{repair_command(run, stage).replace('--repair', '--force')}` re-extracts them with checksums)")
    return out


def verify_run(run: RunDirectory, log=print) -> bool:
    """``debuggable verify``: checksum every finished stage's files; print one line per
    stage and one per damaged file with the command that mends it. Returns whether
    everything matched."""
    from debuggable.pipeline import STAGES

    ok = True
    for stage in STAGES:
        rec = run.stage_record(stage.name)
        if rec is None:
            continue
        if rec.get("status") != "done":
            log(f"{stage.name:13s} partial (never finished): not checked; rerun `{repair_command(run, stage.name).rsplit(' ', 1)[0]}` to finish it")
            continue
        check = check_stage(run, stage.name, full=True)
        if check.ok:
            log(f"{stage.name:13s} ok ({check.files} files match their checksums)")
        else:
            ok = False
            log(f"{stage.name:13s} corrupt: {len(check.problems)} damaged file{'s' if len(check.problems) > 1 else ''}; "
                f"repair with `{check.repair}`")
            for file, problem in check.problems:
                log(f"  {file}: {problem}")
        for note in check.notes:
            log(f"  note: {note}")
    return ok

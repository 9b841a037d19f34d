"""Running stages on a run directory: one stage and what it needs (:func:`run_until`),
every stage (:func:`run_all`), or ``extract``/``fit`` on every process of a torchrun job
(:func:`run_distributed`)."""

from __future__ import annotations

import time
from typing import Any

from debuggable.errors import DebuggableError
from debuggable.pipeline.registry import BY_NAME, STAGES, dependencies
from debuggable.pipeline.stage import StageContext, run_stage
from debuggable.pipeline.validation import resolve_device
from debuggable.run import RunDirectory


def _context(run: RunDirectory, progress: bool) -> StageContext:
    return StageContext(device=resolve_device(run.config.extract.device), progress=progress)


def run_until(run: RunDirectory, stage_name: str, *, force: bool = False, progress: bool = True,
              repair: bool = False) -> dict[str, Any]:
    """Run ``stage_name`` and, first, the stages it depends on (transitively) that are not done.

    ``repair`` (stage ``extract`` only): recompute only the feature-store chunks whose
    files no longer match their checksums, instead of everything ``force`` redoes.
    """
    if stage_name not in BY_NAME:
        raise DebuggableError(f"stage {stage_name!r} does not exist; expected one of {list(BY_NAME)}.")
    needed = dependencies(stage_name)
    ctx = _context(run, progress)
    ctx.repair = bool(repair) and stage_name == "extract"
    summaries: dict[str, Any] = {}
    for stage in STAGES:
        if stage.name not in needed:
            continue
        is_target = stage.name == stage_name
        summary = run_stage(stage, run, ctx, force=force and is_target)
        if summary is not None:
            summaries[stage.name] = summary
        if is_target:
            break
    return summaries


#: The stages that run on every process of a torchrun job; the others run in one.
DISTRIBUTED_STAGES = ("extract", "fit")


def run_distributed(run: RunDirectory, stage_name: str, *, force: bool = False, repair: bool = False,
                    progress: bool = True, timeout_s: float | None = None) -> dict[str, Any]:
    """Stage ``extract`` or ``fit`` on every process of a torchrun job (``WORLD_SIZE > 1``).

    Joins the group from torchrun's environment (NCCL on a CUDA device, each rank on
    its ``LOCAL_RANK``-th GPU; gloo otherwise; ``timeout_s`` bounds how long a rank waits
    for a dead one). Rank 0 checks the run (the stages before this one must be done:
    they run in one process) and decides whether the stage is up to date; every rank
    gets its answer. Then every rank does its share and rank 0 alone writes the
    stage's summary and the manifest:

    * ``extract``: each rank extracts a contiguous range of each split's chunks
      (resumable chunk by chunk, as in one process; ``repair`` recomputes only the
      chunks whose checksums fail);
    * ``fit``: each rank streams its own rows of the feature store and rank 0 writes
      the path; a killed fit resumes from its last saved lambda (``glm/checkpoint/``).
    """
    import os

    import torch

    from debuggable.features.store import StoreIntegrityError
    from debuggable.glm.distributed import DEFAULT_TIMEOUT_S, Communicator, init_from_env
    from debuggable.pipeline.integrity import check_stage, repair_command

    if stage_name not in DISTRIBUTED_STAGES:
        raise DebuggableError(f"torchrun: only {' and '.join(DISTRIBUTED_STAGES)} run on several processes, "
                              f"got {stage_name!r}.")
    ctx = _context(run, progress)
    if ctx.device.type == "cuda":
        ctx.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    group = init_from_env(ctx.device, DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)
    comm = Communicator(group)
    stage = BY_NAME[stage_name]
    repair = bool(repair) and stage_name == "extract"
    force = force or repair
    decision = None
    if comm.is_root:
        try:
            before = [name for name in dependencies(stage_name) - {stage_name}
                      if BY_NAME[name].applies(run) and BY_NAME[name].status(run) != "done"]
            status = stage.status(run)
            if before:
                decision = ("missing", before)
            elif status == "done" and not force:
                decision = ("skip", status)
            elif status == "corrupt" and not force:
                decision = ("error", str(check_stage(run, stage_name, full=False).error()))
            else:
                if stage.check is not None:
                    stage.check(run, ctx)
                decision = ("run", status)
        except DebuggableError as exc:  # every rank must hear of it, or the others wait
            decision = ("error", str(exc))
    kind, detail = comm.broadcast_object(decision, f"agreeing on the {stage_name} stage")
    if kind == "error":
        raise DebuggableError(detail)
    if kind == "missing":
        order = [st.name for st in STAGES if st.name in detail]
        raise DebuggableError(
            f"torchrun: `debuggable {stage_name}` on {comm.world_size} processes needs the stages before it done, "
            f"got {', '.join(order)} not done; run `debuggable {order[-1]} {run.path}` in one process first.")
    if kind == "skip":
        if comm.is_root:
            ctx.log(f"[{stage_name}] up to date, skipped")
        # every rank took this branch (the decision was broadcast): leave together and
        # tear the group down, as after the work; a rank that exits while its peer's
        # gloo connections are still open can abort in the group's destructor (SIGABRT)
        comm.barrier(f"skipping the {stage_name} stage")
        torch.distributed.destroy_process_group()
        return {stage_name: run.summary(stage_name)}
    if not comm.is_root:
        ctx.log = lambda msg: None
    ctx.process_group = group
    ctx.force, ctx.repair = force, repair
    t0 = time.perf_counter()
    if comm.is_root:
        if detail in ("partial", "stale", "corrupt"):
            how = "repairing" if repair else "redoing"
            ctx.log(f"[{stage_name}] {detail}: {how}" + (" (resuming from its checkpoint where one is saved)"
                                                        if stage_name == "fit" else ""))
        run.begin(stage.name, stage.directory, stage.config_hash(run))
    try:
        summary, outputs = stage.fn(run, ctx)
    except StoreIntegrityError as exc:
        raise exc.with_repair(repair_command(run, "extract")) from None
    if comm.is_root:
        run.finish(stage.name, summary, outputs, stage.volatile)
        ctx.log(f"[{stage_name}] done on {comm.world_size} processes in {time.perf_counter() - t0:.1f} s "
                f"-> {run.path / stage.directory}")
    comm.barrier(f"finishing the {stage_name} stage")
    torch.distributed.destroy_process_group()
    return {stage_name: summary}


def run_fit_distributed(run: RunDirectory, *, force: bool = False, progress: bool = True,
                        timeout_s: float | None = None) -> dict[str, Any]:
    """Stage ``fit`` on every process of a torchrun job: :func:`run_distributed` for ``fit``."""
    return run_distributed(run, "fit", force=force, progress=progress, timeout_s=timeout_s)


def run_all(run: RunDirectory, *, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run every stage in order, skipping those already done (all redone with ``force``)."""
    ctx = _context(run, progress)
    summaries: dict[str, Any] = {}
    for stage in STAGES:
        summary = run_stage(stage, run, ctx, force=force)
        if summary is not None:
            summaries[stage.name] = summary
    return summaries

"""The ``debuggable`` command: one sub-command per stage, plus ``demo``, ``run``, ``init``, ``status`` and
``study`` (the human studies: create, serve, status, export, simulate, score).

Every stage sub-command takes a ``run.toml`` (or the run directory holding one),
runs the stages it depends on when they are not done yet, and skips work that is
already complete for the current config.
"""

from __future__ import annotations

import argparse
import os
import sys

from debuggable import __version__
from debuggable.errors import DebuggableError


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device: auto (default: the config's), cpu, cuda, cuda:1, mps")
    p.add_argument("--force", action="store_true", help="redo the stage even when it is up to date")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="debuggable",
        description="Make a trained deep network debuggable: extract its features, fit a sparse decision "
        "layer, find its failures, and report.",
    )
    parser.add_argument("--version", action="version", version=f"debuggable {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run every stage on the built-in Animal-MNIST data with a planted spurious patch")
    demo.add_argument("--out", default=None,
                      help="run directory (default: ./debuggable-demo, ./debuggable-demo-pretrained or ./debuggable-demo-text)")
    demo.add_argument("--pretrained", action="store_true",
                      help="use EfficientNet-Lite0's ImageNet features instead of training a small CNN")
    demo.add_argument("--text", action="store_true",
                      help="the text pipeline instead: MiniLM fine-tuned on the VADER movie snippets with a "
                           "planted trigger token, word clouds, counterfactuals and bias probes")
    demo.add_argument("--frozen", action="store_true",
                      help="with --text: keep the MiniLM encoder frozen (no fine-tuning; into ./debuggable-demo-text-frozen)")
    _add_common(demo)

    init = sub.add_parser("init", help="write a run.toml with every setting at its default")
    init.add_argument("out", help="run directory to create")
    init.add_argument("--demo", action="store_true", help="start from the demo's settings")
    init.add_argument("--model", choices=("module", "exported"), default=None,
                      help="a commented template for your own model: a Python factory + weights (module), or a "
                           "torch.export/TorchScript file (exported)")

    from debuggable.pipeline import STAGES

    run = sub.add_parser("run", help="run every stage of a run.toml")
    run.add_argument("config", help="run.toml, or a run directory holding one")
    _add_common(run)

    from debuggable.pipeline.explain_tests_cli import STAGE_ALIASES, add_explain_tests_options

    for stage in STAGES:
        if stage.name == "studies":  # `debuggable study create` runs it, beside the study app's commands
            continue
        aliases = [a for a, name in STAGE_ALIASES.items() if name == stage.name]
        p = sub.add_parser(stage.name, help=stage.help, aliases=aliases)
        p.add_argument("config", help="run.toml, or a run directory holding one")
        _add_common(p)
        if stage.name == "explain_tests":
            add_explain_tests_options(p)
        if stage.name == "extract":
            p.add_argument("--repair", action="store_true",
                           help="check every feature-store chunk against its checksum and recompute only the damaged ones")

    status = sub.add_parser("status", help="show which stages of a run are done, partial, stale or corrupt")
    status.add_argument("config", help="run.toml, or a run directory holding one")
    verify = sub.add_parser("verify", help="check every file of a run against its recorded checksum; exit 1 if any is damaged")
    verify.add_argument("config", help="run.toml, or a run directory holding one")

    from debuggable.studies.commands import add_study_parser

    add_study_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's exit flush
        return code
    except DebuggableError as exc:
        print(f"debuggable: error: {exc}", file=sys.stderr)
        from debuggable.glm.distributed import DistributedError

        if isinstance(exc, DistributedError):
            # the group lost a rank: tearing it down would abort in gloo's destructor
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except BrokenPipeError:  # `debuggable status RUN | head -1`: the reader left; stop quietly
        from debuggable.run.faults import silence_stdout

        silence_stdout()
        return 141
    except OSError as exc:  # outside a stage (a stage names its own): one sentence, no traceback
        from debuggable.run.faults import io_error

        print(f"debuggable: error: {io_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("debuggable: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from debuggable import pipeline
    from debuggable.run import RunConfig, RunDirectory, dumps_config, ensure_writable

    if args.command == "init":
        if args.model is not None and args.demo:
            raise DebuggableError("init: --demo and --model are different starting points; expected at most one.")
        out = ensure_writable(args.out, hint="choose another directory")
        target = out / "run.toml"
        if target.exists():
            raise DebuggableError(f"{str(target)!r} already exists; edit it or choose another directory.")
        if args.model is not None:
            from debuggable.pipeline.user_models import model_template

            target.write_text(model_template(args.model, args.out), encoding="utf-8")
            print(f"wrote {target}; edit the settings marked EDIT, then run `debuggable run {target}`")
            return 0
        config = pipeline.demo_config() if args.demo else RunConfig()
        target.write_text(dumps_config(config), encoding="utf-8")
        print(f"wrote {target}; edit it, then run `debuggable run {target}`")
        return 0

    if args.command == "study":
        from debuggable.studies.commands import run_study_command

        return run_study_command(args)

    if args.command == "status":
        run = RunDirectory.open(args.config)
        for name, status in pipeline.stage_statuses(run):
            print(f"{name:10s} {status}")
        return 0

    if args.command == "verify":
        from debuggable.pipeline.integrity import verify_run

        return 0 if verify_run(RunDirectory.open(args.config)) else 1

    progress = not args.no_progress
    if args.command == "demo":
        if getattr(args, "text", False) and args.pretrained:
            raise DebuggableError("demo: --text and --pretrained are different demos; expected at most one of them.")
        if args.frozen and not args.text:
            raise DebuggableError("demo: --frozen applies to the text demo; expected --text --frozen.")
        if getattr(args, "text", False):
            config = pipeline.text_demo_config(fine_tune=not args.frozen)
            out = args.out or ("debuggable-demo-text-frozen" if args.frozen else "debuggable-demo-text")
        else:
            config = pipeline.pretrained_demo_config() if args.pretrained else pipeline.demo_config()
            out = args.out or ("debuggable-demo-pretrained" if args.pretrained else "debuggable-demo")
        if args.device:
            config.extract.device = args.device
        pipeline.validate(config)
        run = RunDirectory.create(out, config)
        summaries = pipeline.run_all(run, force=args.force, progress=progress)
        print(pipeline.describe_results(run, summaries))
        return 0

    from debuggable.pipeline.explain_tests_cli import STAGE_ALIASES, apply_explain_tests_options

    run = RunDirectory.open(args.config)
    if args.device:
        run.config.extract.device = args.device
    command = STAGE_ALIASES.get(args.command, args.command)
    changed = command == "explain_tests" and apply_explain_tests_options(run.config, args)
    pipeline.validate(run.config, root=run.path)
    if changed:  # run.toml stays the config that made the run
        from debuggable.run import atomic_write_text

        atomic_write_text(run.path / "run.toml", dumps_config(run.config))
    repair = getattr(args, "repair", False)  # extract --repair: a forced extract that keeps sound chunks
    from debuggable.glm.distributed import env_world

    rank, world, _ = env_world()
    if world > 1:  # under torchrun
        if command not in pipeline.DISTRIBUTED_STAGES:
            raise DebuggableError(f"torchrun: only `debuggable extract` and `debuggable fit` run on several processes, "
                                  f"got `{args.command}`; run it in one process (`debuggable {args.command} {args.config}`).")
        summaries = pipeline.run_distributed(run, command, force=args.force, repair=repair, progress=progress)
        if rank == 0:
            print(pipeline.describe_results(run, summaries))
        return 0
    if args.command == "run":
        summaries = pipeline.run_all(run, force=args.force, progress=progress)
    else:
        summaries = pipeline.run_until(run, command, force=args.force or repair, progress=progress, repair=repair)
    print(pipeline.describe_results(run, summaries))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

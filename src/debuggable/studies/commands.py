"""``debuggable study create|serve|status|export|simulate|score``: the human studies from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from debuggable.errors import DebuggableError

COMMANDS = ("create", "serve", "status", "export", "simulate", "score")


def add_study_parser(sub) -> None:
    """Add the ``study`` command group to the top-level sub-parsers."""
    study = sub.add_parser("study", help="human studies: create the tasks, serve them to annotators, export, score")
    ss = study.add_subparsers(dest="study_command", required=True, metavar="STUDY_COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", help="run.toml, or a run directory holding one")

    p = ss.add_parser("create", help="generate every configured study from the finished run (runs missing stages first)")
    common(p)
    p.add_argument("--device", default=None, help="torch device for the pictures (default: the config's)")
    p.add_argument("--force", action="store_true", help="make the studies again (refused once answers exist)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = ss.add_parser("serve", help="serve the studies to annotators in a browser (FastAPI under uvicorn)")
    common(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--database", default=None, help="SQLAlchemy URL of the answers' database (default: the run's)")
    p.add_argument("--log-level", default="warning", help="uvicorn's log level (info prints every request)")

    p = ss.add_parser("status", help="progress per study and condition")
    common(p)
    p.add_argument("--database", default=None, help="SQLAlchemy URL of the answers' database (default: the run's)")

    p = ss.add_parser("export", help="write the annotators' links (for a crowd platform) and every answer (CSV, JSONL)")
    common(p)
    p.add_argument("--out", default=None, help="directory for the files (default RUN/studies/export)")
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="URL prefix of the links (default %(default)s)")
    p.add_argument("--database", default=None, help="SQLAlchemy URL of the answers' database (default: the run's)")

    p = ss.add_parser("simulate", help="answer the studies with simulated annotators (oracle, noisy, random) over HTTP, "
                                       "then score: for trying the tool out, never for a real study")
    common(p)
    p.add_argument("--oracle", type=int, default=2, help="oracle annotators (answer as the model does)")
    p.add_argument("--noisy", type=int, default=2, help="noisy oracles")
    p.add_argument("--random", type=int, default=2, help="annotators who guess")
    p.add_argument("--reader", type=int, default=0,
                   help="ideal readers of the page (the simulation study from the shown features alone)")
    p.add_argument("--noisy-accuracy", type=float, default=0.6, help="how often a noisy oracle answers as the oracle")
    p.add_argument("--database", default=None, help="SQLAlchemy URL of the answers' database (default: the run's)")

    p = ss.add_parser("score", help="score the answers (intervals, tests, agreement) into studies/scores.json and the report")
    common(p)
    p.add_argument("--database", default=None, help="SQLAlchemy URL of the answers' database (default: the run's)")


def _open(args):
    from debuggable.run import RunDirectory
    from debuggable.studies.files import STUDIES_DIR, StudySet

    run = RunDirectory.open(args.config)
    return run, StudySet(run.path / STUDIES_DIR)


def _database(studies, url: str | None):
    from debuggable.studies.db import StudyDatabase

    db = StudyDatabase(url or studies.database_url)
    db.migrate()
    return db


def run_study_command(args) -> int:
    """Carry out ``debuggable study <command>``; returns the exit code."""
    cmd = args.study_command
    if cmd == "create":
        from debuggable import pipeline
        from debuggable.run import RunDirectory

        run = RunDirectory.open(args.config)
        if args.device:
            run.config.extract.device = args.device
        if run.config.studies is None or not run.config.studies.enabled:
            raise DebuggableError(f"{str(run.path / 'run.toml')!r} turns the studies off; set [studies] enabled = true.")
        pipeline.validate(run.config, root=run.path)
        summaries = pipeline.run_until(run, "studies", force=args.force, progress=not args.no_progress)
        print(pipeline.describe_results(run, summaries))
        print(f"serve them with `debuggable study serve {run.path}`")
        return 0
    run, studies = _open(args)
    if cmd == "serve":
        from debuggable.studies.server import serve

        serve(studies.root, host=args.host, port=args.port, database_url=args.database, log_level=args.log_level)
        return 0
    db = _database(studies, getattr(args, "database", None))
    try:
        if cmd == "status":
            print(format_progress(db.progress()))
            return 0
        if cmd == "export":
            from debuggable.studies.export import answers_rows, links_rows, write_answers_csv, write_answers_jsonl, write_links_csv

            out = Path(args.out) if args.out else studies.root / "export"
            rows = answers_rows(studies, db)
            write_answers_csv(rows, out / "answers.csv")
            write_answers_jsonl(rows, out / "answers.jsonl")
            links = links_rows(studies, args.base_url)
            write_links_csv(links, out / "links.csv")
            print(f"{len(rows)} answers -> {out / 'answers.csv'} and {out / 'answers.jsonl'}")
            print(f"{len(links)} annotator links -> {out / 'links.csv'} (keep it private: each link is a login)")
            return 0
        if cmd == "simulate":
            from debuggable.run.config import SimulatedAnnotatorsConfig
            from debuggable.studies.run_simulation import simulate_and_score

            sim = SimulatedAnnotatorsConfig(oracle=args.oracle, noisy=args.noisy, random=args.random,
                                            reader=args.reader, noisy_accuracy=args.noisy_accuracy)
            result = simulate_and_score(run, sim, database=db, rebuild_report=True)
            print(format_scores(result["scores"]))
            return 0
        if cmd == "score":
            from debuggable.studies.score import score_run

            scores = score_run(run, database=db)
            print(format_scores(scores))
            return 0
    finally:
        db.close()
    raise DebuggableError(f"study command {cmd!r} is unknown; expected one of {list(COMMANDS)}.")


def format_progress(progress: list[dict]) -> str:
    """The ``status`` table: one line per study and condition."""
    lines = [f"{'study':18s} {'condition':12s} {'tasks':>5s} {'answers':>9s} {'annotators':>10s} {'finished':>8s}"]
    for p in progress:
        lines.append(f"{p['study']:18s} {p['condition']:12s} {p['tasks']:5d} {p['answered']:4d}/{p['assigned']:<4d} "
                     f"{p['started']:4d}/{p['annotators']:<5d} {p['finished']:8d}")
    return "\n".join(lines)


def format_scores(scores: dict) -> str:
    """A few lines per study from ``studies/scores.json``."""
    from debuggable.studies.score import headline

    return "\n".join(headline(scores))

"""The run directory: config, manifest, stage directories and stage status.

Layout::

    RUN/
      run.toml          the RunConfig that made the run
      manifest.json     per stage: status, config hash, timings, outputs, version
      data/ models/ features/ ... report/   one directory per stage
      <stage dir>/summary.json              each stage's headline figures

A stage is ``done`` when the manifest says it finished with the current config hash
and its summary exists; ``partial`` when it started and never finished (killed);
``stale`` when it finished under another config, or before a stage it depends on
was redone; ``missing`` when it never ran.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import time
from pathlib import Path
from typing import Any, Literal

from debuggable import __version__
from debuggable.errors import DebuggableError
from debuggable.run.atomic import atomic_write_json, atomic_write_text, read_json
from debuggable.run.config import CONFIG_FILE, RunConfig, dumps_config, load_config
from debuggable.run.integrity import FILES_KEY, record_files

MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "summary.json"
#: Bumped whenever the run-directory layout changes incompatibly.
FORMAT_VERSION = 1

Status = Literal["done", "partial", "stale", "missing"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def ensure_writable(path: str | os.PathLike, hint: str = "choose another with --out") -> Path:
    """Create ``path`` if needed and prove it is writable, or raise one clear sentence
    ending in ``hint`` (what the user can do; commands without ``--out`` pass their own)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "permission denied" if exc.errno != errno.EROFS else "read-only file system"
        raise DebuggableError(
            f"output directory {str(path)!r} is not writable ({reason}); {hint}."
        ) from None
    return path


class RunDirectory:
    """One run directory on disk (see the module docstring for the layout).

    Use :meth:`create` for a new run and :meth:`open` for an existing one; both check
    that the directory was made by a compatible version of debuggable.
    """

    def __init__(self, path: Path, config: RunConfig, manifest: dict[str, Any]):
        self.path = path
        self.config = config
        self.manifest = manifest

    # -- construction -------------------------------------------------------------------
    @staticmethod
    def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
        fmt = manifest.get("format")
        made_by = manifest.get("debuggable_version", "an unknown version")
        if fmt != FORMAT_VERSION:
            raise DebuggableError(
                f"run directory {str(path)!r} was made by debuggable {made_by} (run format {fmt}), "
                f"which this debuggable {__version__} (run format {FORMAT_VERSION}) cannot use; start a new run directory."
            )

    @classmethod
    def create(cls, path: str | os.PathLike, config: RunConfig) -> "RunDirectory":
        """Make (or reuse, when compatible) ``path`` as a run directory for ``config``.

        An existing run directory keeps its manifest; stages whose config section changed
        become ``stale`` and rerun.
        """
        path = ensure_writable(path)
        manifest_path = path / MANIFEST_FILE
        if manifest_path.exists():
            manifest = cls._read_manifest(path)
        else:
            if any(p for p in path.iterdir() if not p.name.startswith(".")):
                raise DebuggableError(
                    f"output directory {str(path)!r} is not empty and is not a run directory; choose an empty or new directory."
                )
            manifest = {"format": FORMAT_VERSION, "debuggable_version": __version__, "created": _now(), "stages": {}}
        atomic_write_text(path / CONFIG_FILE, dumps_config(config))
        run = cls(path, config, manifest)
        run._save_manifest()
        return run

    @classmethod
    def _read_manifest(cls, path: Path) -> dict[str, Any]:
        try:
            manifest = read_json(path / MANIFEST_FILE)
        except (OSError, ValueError) as exc:
            raise DebuggableError(f"run directory {str(path)!r} has an unreadable manifest.json ({exc}).") from None
        if not isinstance(manifest, dict):
            raise DebuggableError(f"run directory {str(path)!r} has a manifest.json that is not a JSON object.")
        cls._check_manifest(path, manifest)
        manifest.setdefault("stages", {})
        return manifest

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDirectory":
        """Open an existing run directory (or the directory of a ``run.toml``)."""
        path = Path(path)
        if path.is_file() and path.name.endswith(".toml"):
            config = load_config(path)
            path = path.parent
        else:
            if not (path / CONFIG_FILE).is_file():
                raise DebuggableError(
                    f"{str(path)!r} is not a run directory (it has no {CONFIG_FILE}); run `debuggable demo` or pass a run.toml."
                )
            config = load_config(path / CONFIG_FILE)
        if (path / MANIFEST_FILE).exists():
            manifest = cls._read_manifest(path)
        else:
            ensure_writable(path, hint="make it writable or copy the run.toml to a directory you can write")
            manifest = {"format": FORMAT_VERSION, "debuggable_version": __version__, "created": _now(), "stages": {}}
        return cls(path, config, manifest)

    # -- manifest -----------------------------------------------------------------------
    def _save_manifest(self) -> None:
        self.manifest["updated"] = _now()
        self.manifest["debuggable_version"] = __version__
        atomic_write_json(self.path / MANIFEST_FILE, self.manifest)

    def stage_dir(self, directory: str) -> Path:
        """``RUN/<directory>``, created if missing."""
        p = self.path / directory
        p.mkdir(parents=True, exist_ok=True)
        return p

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        return self.manifest["stages"].get(stage)

    def status(self, stage: str, config_hash: str, depends_on: tuple[str, ...] = ()) -> Status:
        """Status of ``stage`` for the current config (see module docstring)."""
        rec = self.stage_record(stage)
        if rec is None:
            return "missing"
        if rec.get("status") != "done":
            return "partial"
        if rec.get("config_hash") != config_hash:
            return "stale"
        if not (self.path / rec["dir"] / SUMMARY_FILE).is_file():
            return "partial"
        for dep in depends_on:
            dep_rec = self.stage_record(dep)
            if dep_rec is None:
                continue  # a stage that never ran (e.g. does not apply to this config) is not newer
            if dep_rec.get("status") != "done":
                return "stale"
            if dep_rec.get("finished_at", 0) > rec.get("finished_at", 0):
                return "stale"
        return "done"

    def begin(self, stage: str, directory: str, config_hash: str) -> Path:
        """Mark ``stage`` as started (``partial`` until :meth:`finish`); returns its directory."""
        prev = self.manifest["stages"].get(stage, {})
        self.manifest["stages"][stage] = {
            "status": "running",
            "dir": directory,
            "config_hash": config_hash,
            "started": _now(),
            "started_at": time.time(),
            "attempts": int(prev.get("attempts", 0)) + 1,
            "version": __version__,
        }
        self._save_manifest()
        return self.stage_dir(directory)

    def finish(self, stage: str, summary: dict[str, Any], outputs: list[str], volatile: tuple[str, ...] = ()) -> None:
        """Write ``<dir>/summary.json`` then mark ``stage`` done in the manifest, with the
        size and CRC-32C of every file under its directory (``debuggable.run.integrity``)
        but those matching a ``volatile`` pattern."""
        rec = self.manifest["stages"][stage]
        atomic_write_json(self.path / rec["dir"] / SUMMARY_FILE, summary)
        rec[FILES_KEY] = record_files(self.path, rec["dir"], volatile)
        now = time.time()
        rec.update(
            status="done",
            finished=_now(),
            finished_at=now,
            seconds=round(now - rec["started_at"], 3),
            outputs=outputs,
            summary=f"{rec['dir']}/{SUMMARY_FILE}",
        )
        self._save_manifest()

    def summary(self, stage: str) -> dict[str, Any] | None:
        """The stage's summary.json, or None when it has not finished."""
        rec = self.stage_record(stage)
        if rec is None or rec.get("status") != "done":
            return None
        path = self.path / rec["dir"] / SUMMARY_FILE
        return read_json(path) if path.is_file() else None

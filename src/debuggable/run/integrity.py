"""Checksums of the files a stage wrote, recorded in ``manifest.json`` and checked later.

When a stage finishes, :func:`record_files` lists every file under its directory with
its size and CRC-32C; :func:`check_files` compares the directory with that record,
either fully (reading every file: ``debuggable verify``) or by size only (a ``stat``
per file: ``debuggable status`` and every stage command, before trusting a stage).

Zarr hierarchies (feature stores) are left out: they record a checksum per chunk in
their own done-markers (``debuggable.features.FeatureStore.verify``). Temporaries
(names starting with ``.``) are left out too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import google_crc32c

#: The manifest key under a stage's record.
FILES_KEY = "files"


@dataclass(frozen=True)
class FileProblem:
    """A recorded file that is missing or differs from its record."""

    path: Path
    problem: str


def file_crc32c(path: str | os.PathLike, block: int = 1 << 24) -> tuple[int, int]:
    """(size in bytes, CRC-32C) of a file, read in blocks."""
    crc, size = 0, 0
    with open(path, "rb", buffering=0) as f:
        while True:
            data = f.read(block)  # bytes: what google-crc32c takes without a copy
            if not data:
                break
            crc = google_crc32c.extend(crc, data)
            size += len(data)
    return size, crc


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here != root and (here / "zarr.json").is_file():
            dirnames[:] = []  # a Zarr hierarchy checks itself
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield here / name


def record_files(run_path: Path, directory: str, volatile: tuple[str, ...] = ()) -> dict[str, list[int]]:
    """``{relative path: [size, crc32c]}`` for every file under ``run_path/directory``,
    except those matching a ``volatile`` pattern (``fnmatch``, relative to the
    directory: files that keep changing after the stage, such as a database)."""
    from fnmatch import fnmatch

    out: dict[str, list[int]] = {}
    root = run_path / directory
    for p in _walk(root):
        if any(fnmatch(p.relative_to(root).as_posix(), pat) for pat in volatile):
            continue
        size, crc = file_crc32c(p)
        out[p.relative_to(run_path).as_posix()] = [size, crc]
    return out


def check_files(run_path: Path, record: dict[str, Any], full: bool = True) -> list[FileProblem]:
    """Files of ``record`` that are missing, of another size or (``full``) another CRC-32C."""
    problems = []
    for rel, (size, crc) in sorted(record.items()):
        p = run_path / rel
        try:
            now = p.stat().st_size
        except FileNotFoundError:
            problems.append(FileProblem(p, "missing"))
            continue
        if now != size:
            what = "truncated" if now < size else "longer than recorded"
            problems.append(FileProblem(p, f"{what} ({now} of {size} bytes)"))
            continue
        if full:
            _, got = file_crc32c(p)
            if got != crc:
                problems.append(FileProblem(p, f"corrupt (CRC-32C {got:08x}, recorded {crc:08x})"))
    return problems

"""VADER's human-rated sentences as binary sentiment data.

Hutto & Gilbert (ICWSM 2014) had every sentence rated by about 20 people on a -4..+4
scale. Their data ships inside the *source archive* of ``vaderSentiment`` 3.3.2 on
PyPI (``additional_resources/hutto_ICWSM_2014.tar.gz``), as four tab-separated
``*_GroundTruth.txt`` files with one ``ID<TAB>MEAN-RATING<TAB>TEXT`` line per sentence:

* ``movieReviewSnippets_GroundTruth.txt``: 10,605 rotten-tomatoes review snippets;
* ``tweets_GroundTruth.txt``: 4,200 tweets;
* ``amazonReviewSnippets_GroundTruth.txt``: 3,708 product-review sentences;
* ``nytEditorialSnippets_GroundTruth.txt``: 5,190 New York Times editorial sentences.

The data are fetched on first use only: ``pip download`` of the source archive into
a temporary folder, extraction of the four files into
``$DEBUGGABLE_CACHE/vader/hutto_ICWSM_2014`` (default cache ``~/.cache/debuggable``)
and one rename, so the cache is either complete or absent. Later calls read the cache.
Offline, pass ``archive=`` (the sdist, the inner ``hutto_ICWSM_2014.tar.gz`` or a
folder holding the files) or put either archive into ``$DEBUGGABLE_CACHE/vader/``.
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from debuggable.data._common import (
    cache_root,
    check_positive_int,
    check_seed,
    check_split_fractions,
    limit_per_class_indices,
    split_dataset,
)
from debuggable.data.base import DatasetSplits, TextDataset
from debuggable.errors import DebuggableError

VADER_VERSION = "3.3.2"
VADER_SDIST = f"vaderSentiment-{VADER_VERSION}.tar.gz"
#: SHA-256 of ``vaderSentiment-3.3.2.tar.gz`` as published on PyPI.
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER_ARCHIVE = "hutto_ICWSM_2014.tar.gz"
VADER_FOLDER = "hutto_ICWSM_2014"
#: domain -> file name inside ``hutto_ICWSM_2014/``.
VADER_FILES = {
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
VADER_DOMAINS = {
    "movies": "movie-review snippets (rotten tomatoes, Pang & Lee 2004)",
    "tweets": "tweets",
    "amazon": "Amazon product-review sentences (Hu & Liu 2004)",
    "nyt": "New York Times editorial sentences",
}
VADER_CLASSES = ["negative", "positive"]
_CITATION = "Hutto & Gilbert, VADER, ICWSM 2014"


@dataclass(frozen=True)
class VaderRecords:
    """One parsed ``*_GroundTruth.txt`` file.

    Attributes:
        ids: N sentence ids as in the file (e.g. ``"17"`` or ``"12_3"``).
        ratings: (N,) float64 mean human rating on the -4..+4 scale.
        texts: N sentences.
    """

    ids: list[str]
    ratings: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def parse_vader_ground_truth(text: str, source: str = "<text>") -> VaderRecords:
    """Parse the ``ID<TAB>MEAN-RATING<TAB>TEXT`` lines of a VADER ground-truth file.

    Lines end in CRLF or LF; a UTF-8 byte-order mark and blank lines are ignored; the
    text is everything after the second tab, with surrounding whitespace removed.
    Lines with extra columns (the ``*_anonDataRatings.txt`` layout ``ID, MEAN, SD,
    [RATINGS]``) are rejected because they carry no text.

    Args:
        text: the file's contents.
        source: the file's name, for error messages.

    Returns:
        :class:`VaderRecords`.

    Raises:
        DebuggableError: on a line that is not ``id, rating, text`` with a rating in
            [-4, 4], or when no line is found.
    """
    ids: list[str] = []
    ratings: list[float] = []
    texts: list[str] = []
    for lineno, line in enumerate(text.lstrip("\ufeff").split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise DebuggableError(
                f"{source} line {lineno}: expected 'ID<TAB>MEAN-RATING<TAB>TEXT', got {line[:60]!r}."
            )
        sid, rating_s, sentence = parts
        try:
            rating = float(rating_s)
        except ValueError:
            raise DebuggableError(f"{source} line {lineno}: rating {rating_s!r} is not a number.") from None
        if not (math.isfinite(rating) and -4.0 <= rating <= 4.0):
            raise DebuggableError(f"{source} line {lineno}: rating {rating_s!r} is outside the -4..+4 scale.")
        extra = sentence.split("\t")
        if len(extra) == 2 and extra[1].strip().startswith("[") and extra[1].strip().endswith("]"):
            raise DebuggableError(
                f"{source} line {lineno}: looks like a raw-ratings (anonDataRatings) line, expected a GroundTruth line."
            )
        ids.append(sid.strip())
        ratings.append(rating)
        texts.append(sentence.strip())
    if not ids:
        raise DebuggableError(f"{source}: no 'ID<TAB>MEAN-RATING<TAB>TEXT' lines found.")
    return VaderRecords(ids=ids, ratings=np.asarray(ratings, dtype=np.float64), texts=texts)


# ----------------------------------------------------------------------------- acquisition


def vader_cache_dir() -> Path:
    """``$DEBUGGABLE_CACHE/vader`` (default ``~/.cache/debuggable/vader``)."""
    return cache_root() / "vader"


def _files_in_folder(folder: Path) -> dict[str, bytes] | None:
    for candidate in (folder, folder / VADER_FOLDER):
        if all((candidate / f).is_file() for f in VADER_FILES.values()):
            return {d: (candidate / f).read_bytes() for d, f in VADER_FILES.items()}
    return None


def _files_in_tar(tar: tarfile.TarFile, what: str, depth: int = 0) -> dict[str, bytes]:
    """The four ground-truth files from an open tar (the inner archive, or the sdist
    whose ``additional_resources/hutto_ICWSM_2014.tar.gz`` is opened in turn)."""
    wanted = set(VADER_FILES.values())
    found: dict[str, bytes] = {}
    inner = None
    for member in tar.getmembers():
        if not member.isfile():
            continue
        base = member.name.rsplit("/", 1)[-1]
        if base in wanted and base not in found:
            f = tar.extractfile(member)
            if f is not None:
                found[base] = f.read()
        elif base == VADER_INNER_ARCHIVE and inner is None:
            inner = member
    if len(found) == len(wanted):
        return {d: found[f] for d, f in VADER_FILES.items()}
    if inner is not None and depth == 0:
        f = tar.extractfile(inner)
        if f is not None:
            with tarfile.open(fileobj=io.BytesIO(f.read()), mode="r:*") as inner_tar:
                return _files_in_tar(inner_tar, f"{what}:{inner.name}", depth + 1)
    missing = sorted(wanted - set(found))
    raise DebuggableError(
        f"archive {what} lacks {', '.join(missing)}; expected {VADER_SDIST} or its "
        f"additional_resources/{VADER_INNER_ARCHIVE}."
    )


def _read_archive(path: Path) -> dict[str, bytes]:
    """The four ground-truth files (domain -> bytes) from an archive file or folder."""
    if path.is_dir():
        files = _files_in_folder(path)
        if files is None:
            raise DebuggableError(
                f"archive folder {path} lacks {', '.join(VADER_FILES.values())}; expected the "
                f"extracted {VADER_FOLDER}/ folder or a folder holding those files."
            )
        return files
    if not path.is_file():
        raise DebuggableError(f"archive {str(path)!r} does not exist; expected the path of {VADER_SDIST}, "
                              f"{VADER_INNER_ARCHIVE} or their extracted folder.")
    try:
        with tarfile.open(path, mode="r:*") as tar:
            return _files_in_tar(tar, str(path))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DebuggableError(f"archive {str(path)!r} is not a readable tar archive ({exc}).") from exc


def _how_to_provide(cache: Path) -> str:
    return (
        f"download {VADER_SDIST} from https://pypi.org/project/vaderSentiment/{VADER_VERSION}/#files "
        f"(or run `python -m pip download --no-deps --no-binary :all: vaderSentiment=={VADER_VERSION}`) "
        f"and pass its path as archive=, or place it in {cache}"
    )


def _pip_download(dest: Path, cache: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", f"vaderSentiment=={VADER_VERSION}", "-d", str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DebuggableError(f"Downloading {VADER_SDIST} with pip failed ({exc}); {_how_to_provide(cache)}.") from exc
    sdist = dest / VADER_SDIST
    if proc.returncode != 0 or not sdist.is_file():
        tail = " ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-2:])[-300:]
        raise DebuggableError(
            f"Downloading {VADER_SDIST} with pip failed (exit {proc.returncode}: {tail}); {_how_to_provide(cache)}."
        )
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != VADER_SDIST_SHA256:
        raise DebuggableError(
            f"The downloaded {VADER_SDIST} has SHA-256 {digest}, expected {VADER_SDIST_SHA256}; {_how_to_provide(cache)}."
        )
    return sdist


def _install_into_cache(files: Mapping[str, bytes], cache: Path) -> Path:
    """Write the files to ``cache/hutto_ICWSM_2014`` atomically; returns that folder."""
    final = cache / VADER_FOLDER
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{VADER_FOLDER}.", dir=cache))
    os.chmod(tmp, 0o755)
    try:
        for domain, fname in VADER_FILES.items():
            with open(tmp / fname, "wb") as f:
                f.write(files[domain])
                f.flush()
                os.fsync(f.fileno())
        try:
            os.rename(tmp, final)
        except OSError:
            if _files_in_folder(final) is None:  # not a concurrent writer that won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def vader_ground_truth_files(archive: str | os.PathLike | None = None) -> tuple[dict[str, bytes], str]:
    """The four VADER ground-truth files, acquiring them on first use.

    Order: ``archive`` when given (read in place, nothing cached); else the cache
    folder ``$DEBUGGABLE_CACHE/vader/hutto_ICWSM_2014``; else an archive the user put
    into ``$DEBUGGABLE_CACHE/vader/`` (extracted into the cache); else
    ``pip download`` of the source archive (about 2.5 MB from PyPI, checked against
    its SHA-256) into a temporary folder, extracted into the cache.

    Returns:
        ``(files, origin)``: domain (``movies``, ``tweets``, ``amazon``, ``nyt``) ->
        file bytes, and a description of where they came from.

    Raises:
        DebuggableError: when the archive is unusable or the download fails, saying
            how to provide the archive by hand.
    """
    if archive is not None:
        path = Path(archive).expanduser()
        return _read_archive(path), f"archive {path}"
    cache = vader_cache_dir()
    files = _files_in_folder(cache / VADER_FOLDER)
    if files is not None:
        return files, f"cache {cache / VADER_FOLDER} (from {VADER_SDIST})"
    for name in (VADER_SDIST, VADER_INNER_ARCHIVE):
        if (cache / name).is_file():
            files = _read_archive(cache / name)
            _install_into_cache(files, cache)
            return files, f"cache {cache / VADER_FOLDER} (from {cache / name})"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DebuggableError(f"Cannot create the cache folder {cache} ({exc}); set DEBUGGABLE_CACHE to a writable "
                              f"folder or pass archive=.") from exc
    with tempfile.TemporaryDirectory(prefix=".download.", dir=cache) as tmp:
        sdist = _pip_download(Path(tmp), cache)
        files = _read_archive(sdist)
    _install_into_cache(files, cache)
    return files, f"cache {cache / VADER_FOLDER} (downloaded {VADER_SDIST} from PyPI)"


# ----------------------------------------------------------------------------- loader


def vader_labels(ratings: np.ndarray, min_abs_rating: float) -> tuple[np.ndarray, np.ndarray]:
    """The binary labelling rule.

    Args:
        ratings: (N,) mean ratings on -4..+4.
        min_abs_rating: ratings with ``|r| < min_abs_rating`` (and exactly 0) are dropped.

    Returns:
        ``(keep, labels)``: (N,) bool mask of kept rows and (M,) int64 labels of the
        kept rows, 1 (positive) for ``r >= min_abs_rating``, 0 (negative) for
        ``r <= -min_abs_rating``.
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    keep = (np.abs(ratings) >= min_abs_rating) & (ratings != 0)
    return keep, (ratings[keep] > 0).astype(np.int64)


def load_vader_movies(
    *,
    min_abs_rating: float = 0.5,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    archive: str | os.PathLike | None = None,
    limit_per_class: int | None = None,
) -> DatasetSplits:
    """VADER's movie-review snippets as binary sentiment, plus three shifted test domains.

    Labels: ``"positive"`` (1) when the mean human rating is ``>= min_abs_rating``,
    ``"negative"`` (0) when ``<= -min_abs_rating``; weaker (and exactly neutral)
    sentences are dropped. The movie snippets are split stratified into
    ``train``/``val``/``test``; ``test_tweets``, ``test_amazon`` and ``test_nyt`` hold
    every kept sentence of the other corpora under the same rule. Each split's
    ``source`` names its corpus, file, origin, labelling rule and counts.

    Args:
        min_abs_rating: the neutral band's half-width on the -4..+4 scale, in [0, 4).
        val_fraction: share of the kept movie snippets for ``val``, in (0, 1).
        test_fraction: share for ``test``, in (0, 1); the two sum to less than 1.
        seed: seeds the split.
        archive: path to ``vaderSentiment-3.3.2.tar.gz``, the inner
            ``hutto_ICWSM_2014.tar.gz`` or their extracted folder; None uses the cache
            and downloads the source archive on first use (see
            :func:`vader_ground_truth_files`).
        limit_per_class: keep at most this many movie snippets of each class (a
            seeded choice, before splitting) to make runs faster; None keeps all. The
            shifted test domains are not limited.

    Returns:
        :class:`DatasetSplits` named ``"vader_movies"`` of :class:`TextDataset` splits
        with class names ``["negative", "positive"]``.
    """
    if isinstance(min_abs_rating, bool) or not isinstance(min_abs_rating, numbers.Real) or not (
        math.isfinite(float(min_abs_rating)) and 0.0 <= float(min_abs_rating) < 4.0
    ):
        raise DebuggableError(f"min_abs_rating must be a number in [0, 4) on the -4..+4 rating scale, got {min_abs_rating!r}.")
    min_abs = float(min_abs_rating)
    check_split_fractions(val_fraction, test_fraction)
    seed = check_seed(seed)
    files, origin = vader_ground_truth_files(archive)
    rule = f"positive if mean rating >= {min_abs:g}, negative if <= {-min_abs:g}, otherwise dropped (scale -4..+4)"

    def domain_dataset(domain: str, name: str) -> tuple[TextDataset, dict]:
        fname = VADER_FILES[domain]
        rec = parse_vader_ground_truth(files[domain].decode("utf-8", errors="replace"), fname)
        keep, labels = vader_labels(rec.ratings, min_abs)
        texts = [t for t, k in zip(rec.texts, keep) if k]
        source = {
            "dataset": "vader",
            "corpus": _CITATION,
            "domain": VADER_DOMAINS[domain],
            "file": f"{VADER_FOLDER}/{fname}",
            "origin": origin,
            "label_rule": rule,
            "n_source": len(rec),
            "n_dropped": int((~keep).sum()),
        }
        if not texts:
            raise DebuggableError(
                f"min_abs_rating={min_abs:g} drops every sentence of {fname}; expected a smaller value."
            )
        return TextDataset(texts, labels, VADER_CLASSES, name=name, source=source), source

    movies, movie_source = domain_dataset("movies", "vader_movies")
    limit = check_positive_int("limit_per_class", limit_per_class, allow_none=True)
    if limit is not None:
        rows = limit_per_class_indices(movies.labels, limit, seed)
        movie_source = {**movie_source, "limit_per_class": limit, "n_limited": int(rows.size)}
        movies = TextDataset([movies.texts[i] for i in rows], movies.labels[rows], VADER_CLASSES, name="vader_movies",
                             source=movie_source)
    out = split_dataset(
        movies, name="vader_movies", val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        source=movie_source,
    )
    for domain in ("tweets", "amazon", "nyt"):
        ds, src = domain_dataset(domain, f"vader_movies/test_{domain}")
        ds.source = {**src, "split": f"test_{domain}", "split_rule": "every kept sentence (shifted test domain)"}
        out.splits[f"test_{domain}"] = ds
    return DatasetSplits(name=out.name, splits=out.splits, class_names=out.class_names)

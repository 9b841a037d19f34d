"""VADER sentences: the ground-truth parser, archive handling, cache, labels, domains."""

from __future__ import annotations

import io
import subprocess
import tarfile

import numpy as np
import pytest

from debuggable.data import load_vader_movies, parse_vader_ground_truth, vader_ground_truth_files
from debuggable.data import text as vader
from debuggable.errors import DebuggableError

# (id, rating, text) per domain, in the real files' layout: tab-separated, CRLF line
# ends, no newline after the last line, ids "n" (movies, tweets) or "n_m" (amazon, nyt).
ROWS = {
    "movies": [
        ("1", "2.26666666667", "The Rock is destined to be the 21st Century's new ''Conan''."),
        ("2", "-0.6", "Effective but too tepid biopic"),
        ("3", "0.3", "A film about a man."),
        ("4", "0", "It is 90 minutes long."),
        ("5", "-3.1", "Dreadful \u2013 just dreadful."),
        ("6", "1.5", "charming\tand warm"),  # a tab inside the text stays in the text
        ("7", "-0.5", "Not quite there."),
        ("8", "0.5", "Pleasant enough."),
    ] + [(str(9 + i), f"{(-1) ** i * (1 + i % 3)}", f"movie sentence {i}") for i in range(32)],
    "tweets": [("1", "2.7", "So lucky."), ("2", "-1.2", "ugh"), ("3", "0.1", "ok")],
    "amazon": [("1_1", "-0.9", "no picture."), ("1_2", "0.45", "it worked good."), ("1_3", "-3.0", "it froze and now it is junk.")],
    "nyt": [("1_1", "0.4", "Events include sprinting."), ("1_2", "-2.8", "A grim record."), ("2_1", "1.5", "Fine.")],
}


def _file_text(domain: str, bom: bool = False) -> str:
    body = "\r\n".join("\t".join(r) for r in ROWS[domain])
    return ("\ufeff" if bom else "") + body


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _inner_archive() -> bytes:
    members = {
        f"hutto_ICWSM_2014/{fname}": _file_text(domain, bom=domain == "amazon").encode("utf-8")
        for domain, fname in vader.VADER_FILES.items()
    }
    members["hutto_ICWSM_2014/_README_.txt"] = b"readme"
    return _tar_bytes(members)


@pytest.fixture
def sdist(tmp_path):
    """A synthetic vaderSentiment-3.3.2.tar.gz laid out like the real one."""
    path = tmp_path / vader.VADER_SDIST
    path.write_bytes(_tar_bytes({
        "vaderSentiment-3.3.2/setup.py": b"",
        "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": _inner_archive(),
    }))
    return path


def test_parser_reads_the_real_line_format():
    rec = parse_vader_ground_truth(_file_text("movies", bom=True), "movies.txt")
    assert len(rec) == len(ROWS["movies"])
    assert rec.ids[:2] == ["1", "2"]
    assert rec.ratings.dtype == np.float64 and rec.ratings[0] == pytest.approx(2.26666666667)
    assert rec.texts[0] == "The Rock is destined to be the 21st Century's new ''Conan''."
    assert rec.texts[4] == "Dreadful \u2013 just dreadful."
    assert rec.texts[5] == "charming\tand warm"
    amazon = parse_vader_ground_truth(_file_text("amazon", bom=True))
    assert amazon.ids == ["1_1", "1_2", "1_3"] and not amazon.ids[0].startswith("\ufeff")


@pytest.mark.parametrize(
    "text, words",
    [
        ("1\t2.0", "expected 'ID<TAB>MEAN-RATING<TAB>TEXT'"),
        ("1\tgood\tnice film", "not a number"),
        ("1\t4.5\tnice film", "outside the -4..\\+4 scale"),
        ("1\t-0.9\t0.76811\t[0, -1, 0, -2]", "raw-ratings"),
        ("\r\n\r\n", "no 'ID"),
    ],
)
def test_parser_errors(text, words):
    with pytest.raises(DebuggableError, match=words):
        parse_vader_ground_truth(text, "f.txt")


def test_labels_follow_the_rule(sdist):
    keep, labels = vader.vader_labels(np.array([2.0, -0.6, 0.3, 0.0, -0.5, 0.5]), 0.5)
    assert keep.tolist() == [True, True, False, False, True, True]
    assert labels.tolist() == [1, 0, 0, 1]
    keep0, _ = vader.vader_labels(np.array([0.0, 0.1]), 0.0)
    assert keep0.tolist() == [False, True]  # exactly neutral is always dropped


def test_load_from_a_synthetic_sdist(sdist):
    s = load_vader_movies(archive=sdist, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert s.class_names == ["negative", "positive"] and s.modality == "text"
    assert set(s.splits) == {"train", "val", "test", "test_tweets", "test_amazon", "test_nyt"}
    movie_texts = [t for sp in ("train", "val", "test") for t in s[sp].texts]
    assert len(movie_texts) == len(ROWS["movies"]) - 2  # 0.3 and 0 are dropped
    assert "A film about a man." not in movie_texts and "Not quite there." in movie_texts
    label_of = {t: lab for sp in ("train", "val", "test") for t, lab in zip(s[sp].texts, s[sp].labels)}
    assert label_of["Effective but too tepid biopic"] == 0 and label_of["Pleasant enough."] == 1
    assert s["test_tweets"].texts == ["So lucky.", "ugh"]
    assert s["test_amazon"].labels.tolist() == [0, 0]
    assert s["test_nyt"].labels.tolist() == [0, 1]
    src = s.train.source
    assert src["file"].endswith("movieReviewSnippets_GroundTruth.txt") and src["n_source"] == len(ROWS["movies"])
    assert src["n_dropped"] == 2 and "0.5" in src["label_rule"] and str(sdist) in src["origin"]
    assert s["test_nyt"].source["domain"].startswith("New York Times")
    stricter = load_vader_movies(archive=sdist, min_abs_rating=2.5, seed=0)
    assert stricter["test_nyt"].texts == ["A grim record."]
    with pytest.raises(DebuggableError, match="drops every sentence"):
        load_vader_movies(archive=sdist, min_abs_rating=3.5)


def test_inner_archive_and_folder_work_too(tmp_path, sdist):
    inner = tmp_path / "hutto_ICWSM_2014.tar.gz"
    inner.write_bytes(_inner_archive())
    folder = tmp_path / "unpacked"
    with tarfile.open(inner) as tar:
        tar.extractall(folder, filter="data")
    a = load_vader_movies(archive=sdist, seed=1)
    for other in (inner, folder, folder / "hutto_ICWSM_2014"):
        b = load_vader_movies(archive=other, seed=1)
        assert b.train.texts == a.train.texts and b["test_amazon"].texts == a["test_amazon"].texts


def test_archive_in_the_cache_is_extracted_once(tmp_path, sdist, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEBUGGABLE_CACHE", str(cache))
    (cache / "vader").mkdir(parents=True)
    (cache / "vader" / vader.VADER_SDIST).write_bytes(sdist.read_bytes())
    files, origin = vader_ground_truth_files()
    assert "from" in origin and set(files) == {"movies", "tweets", "amazon", "nyt"}
    assert sorted(p.name for p in (cache / "vader" / "hutto_ICWSM_2014").iterdir()) == sorted(vader.VADER_FILES.values())
    assert not [p for p in (cache / "vader").iterdir() if p.name.startswith(".")]  # no temporary leftovers
    (cache / "vader" / vader.VADER_SDIST).unlink()
    files2, origin2 = vader_ground_truth_files()
    assert files2 == files and origin2.startswith("cache")


def test_failed_download_explains_how_to_provide_the_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUGGABLE_CACHE", str(tmp_path / "cache"))

    def offline(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"]
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (network unreachable)")

    monkeypatch.setattr(vader.subprocess, "run", offline)
    with pytest.raises(DebuggableError, match="archive=") as info:
        load_vader_movies()
    assert "network unreachable" in str(info.value) and str(tmp_path / "cache" / "vader") in str(info.value)
    assert not (tmp_path / "cache" / "vader" / "hutto_ICWSM_2014").exists()


def test_download_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch, sdist):
    monkeypatch.setenv("DEBUGGABLE_CACHE", str(tmp_path / "cache"))

    def fake_pip(cmd, **kw):
        dest = cmd[cmd.index("-d") + 1]
        (tmp_path / "x").mkdir(exist_ok=True)
        import shutil

        shutil.copy(sdist, f"{dest}/{vader.VADER_SDIST}")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(vader.subprocess, "run", fake_pip)
    with pytest.raises(DebuggableError, match="SHA-256"):
        load_vader_movies()
    assert list((tmp_path / "cache" / "vader").iterdir()) == []  # the temporary download is gone


def test_bad_archives_and_arguments(tmp_path):
    with pytest.raises(DebuggableError, match="does not exist"):
        load_vader_movies(archive=tmp_path / "nope.tar.gz")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    with pytest.raises(DebuggableError, match="not a readable tar"):
        load_vader_movies(archive=junk)
    partial = tmp_path / "partial.tar.gz"
    partial.write_bytes(_tar_bytes({"hutto_ICWSM_2014/tweets_GroundTruth.txt": b"1\t1.0\thi"}))
    with pytest.raises(DebuggableError, match="lacks"):
        load_vader_movies(archive=partial)
    with pytest.raises(DebuggableError, match="min_abs_rating"):
        load_vader_movies(min_abs_rating=4.5, archive=partial)


def test_real_archive_counts_and_balance():
    """The real data (downloaded into the cache by pip on first use, ~2.5 MB)."""
    try:
        files, _ = vader_ground_truth_files()
    except DebuggableError as exc:
        if str(exc).startswith("Downloading"):
            pytest.skip(f"the VADER source archive could not be downloaded here: {exc}")
        raise
    movies = parse_vader_ground_truth(files["movies"].decode("utf-8"), "movies")
    assert len(movies) == 10605
    assert [len(parse_vader_ground_truth(files[d].decode("utf-8"))) for d in ("tweets", "amazon", "nyt")] == [4200, 3708, 5190]
    s = load_vader_movies(seed=0)
    kept = sum(len(s[sp]) for sp in ("train", "val", "test"))
    assert kept == 10072  # |rating| >= 0.5: 5,076 negative and 4,996 positive
    for sp in ("train", "val", "test"):
        pos = s[sp].class_counts()[1] / len(s[sp])
        assert abs(pos - 4996 / 10072) < 0.002  # stratified: same balance in every split
    assert s["test_tweets"].class_counts().tolist() == [1087, 2345]


def test_bad_fractions_fail_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUGGABLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vader.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DebuggableError, match="val_fraction"):
        load_vader_movies(val_fraction=0.6, test_fraction=0.5)
    assert not (tmp_path / "cache").exists()


def test_limit_per_class_keeps_a_seeded_subset_of_the_movie_snippets():
    try:
        full = load_vader_movies(seed=0)
    except DebuggableError as exc:
        if str(exc).startswith("Downloading"):
            pytest.skip(f"the VADER source archive could not be downloaded here: {exc}")
        raise
    small = load_vader_movies(seed=0, limit_per_class=500)
    for name in ("train", "val", "test"):
        assert set(small[name].texts) <= {t for sp in ("train", "val", "test") for t in full[sp].texts}
    counts = sum(small[sp].class_counts() for sp in ("train", "val", "test"))
    assert counts.tolist() == [500, 500]
    assert small["test_tweets"].texts == full["test_tweets"].texts  # shifted domains untouched
    assert small.train.source["limit_per_class"] == 500
    assert load_vader_movies(seed=0, limit_per_class=500)["test"].texts == small["test"].texts
    with pytest.raises(DebuggableError, match="limit_per_class"):
        load_vader_movies(seed=0, limit_per_class=0)

"""Simulated annotators: policies with known accuracy that answer through the web app's HTTP API.

They exist to test the whole chain (task pages, API, database, scoring) against what
must come out, and to give the demo a scored study; they are never a substitute for
people. Three policies:

* :class:`OraclePolicy` answers as the model does: a keyed question with its key
  (the key was computed from the model when the task was made), the others from
  what the task's record says about the model (e.g. which shown feature fires on the
  image, whether the shown images carry the planted patch);
* :class:`NoisyOraclePolicy` answers each question as the oracle with probability
  ``p`` and guesses otherwise, so on a keyed choice among ``m`` options its accuracy
  is ``p + (1 - p) / m``;
* :class:`RandomPolicy` guesses everything (accuracy ``1 / m``; random words for text);
* :class:`ReaderPolicy` is an ideal reader of what the page shows: in the simulation
  study it scores each image by the shown features only (sum of weight x
  standardised activation) and picks the best, as a person who perceived the shown
  patterns perfectly would; elsewhere it answers as the oracle. Its accuracy is not
  fixed in advance: it measures how much of the model the shown features explain.

:func:`run_simulated_annotators` drives annotators concurrently over HTTP, each with
its own policy and seeded generator; :func:`background_server` serves a study set on
a free loopback port for the duration of a ``with`` block.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np

from debuggable.errors import DebuggableError
from debuggable.studies.schema import Question, Task

#: Words random annotators type.
_VOCABULARY = ("blob thing stuff texture edge shape colour line dot grey dark light round square corner stripe "
               "background animal leg head tail spot pattern noise white black curve").split()


def expected_accuracy(policy: str, n_options: int, p: float = 0.0) -> float | None:
    """A policy's expected accuracy on a keyed choice among ``n_options`` options (None
    for the reader, whose accuracy is what it measures)."""
    if policy == "reader":
        return None
    if policy == "oracle":
        return 1.0
    if policy == "random":
        return 1.0 / n_options
    if policy == "noisy":
        return p + (1.0 - p) / n_options
    raise DebuggableError(f"policy {policy!r}: expected 'oracle', 'noisy' or 'random'.")


def guess(q: Question, rng: np.random.Generator) -> Any:
    """A uniformly random answer to ``q`` (text: 3-15 random words; optional text left empty half the time)."""
    if q.kind == "choice":
        return q.options[int(rng.integers(len(q.options)))].value
    if q.kind == "multi":
        return [o.value for o in q.options if rng.random() < 0.5]
    if q.kind == "likert":
        return int(rng.integers(q.low, q.high + 1))
    if not q.required and rng.random() < 0.5:
        return None
    n = int(rng.integers(3, 16)) if (q.words or 15) > 3 else 3
    return " ".join(rng.choice(_VOCABULARY, size=n))[: q.max_chars]


def informed(task: Task, q: Question) -> Any:
    """What the model's record says the answer to an unkeyed question is, or None
    (then the oracle gives the scale's middle or the first option)."""
    meta = task.meta
    if "planted_patch_by_side" in meta:  # spurious correlation
        by_side = meta["planted_patch_by_side"]
        patch = meta.get("planted_patch_fraction", 0.0) > 0.5
        if q.key == "shared":
            return "yes"
        if q.key == "describe":
            return "small white square in the corner" if patch else f"{' and '.join(meta['pair_names'])} body shape"
        if q.key.startswith("where_"):
            return "surroundings" if by_side.get(q.key[-1], 0.0) > 0.5 else "object"
    if "options" in meta and isinstance(meta["options"], dict):  # misclassification
        z = {letter: o["activation_z"] for letter, o in meta["options"].items()}
        if q.key == "present":
            return [letter for letter, v in sorted(z.items()) if v > 1.0]
        if q.key == "better":
            return max(z, key=z.get)
    if "mutual_information" in meta:  # feature description
        if q.key == "short":
            return f"{meta['class_name']} feature {meta['feature']}"
        if q.key == "long":
            return (f"parts of {meta['class_name']} pictures that activate feature {meta['feature']}, "
                    "strongest where the heatmap is red")
        if q.key == "helpful":
            return "both"
    if "split_features" in meta:  # failure review
        return {"describable": "yes", "necessary": "unsure", "actions": ["collect"],
                "describe": f"pictures of {meta['class_name']} on which the split features are strong",
                "actions_text": None}.get(q.key)
    return None


class Policy(ABC):
    """How a simulated annotator answers a task."""

    name: str = ""

    @abstractmethod
    def value(self, task: Task, q: Question, rng: np.random.Generator) -> Any:
        """The answer to one question (None to leave an optional one out)."""

    def answer(self, task: Task, rng: np.random.Generator) -> dict[str, Any]:
        """The answer to every question the annotator is shown, in order (``show_if`` respected)."""
        out: dict[str, Any] = {}
        for q in task.questions:
            if q.show_if is not None and out.get(q.show_if["key"]) != q.show_if["equals"]:
                continue
            v = self.value(task, q, rng)
            if v is None and q.required:
                v = guess(q, rng)
            if v is not None:
                out[q.key] = v
        return out


class OraclePolicy(Policy):
    name = "oracle"

    def value(self, task, q, rng):
        if q.key in task.key:
            return task.key[q.key]
        v = informed(task, q)
        if v is not None:
            return v
        if q.kind == "likert":
            return (q.low + q.high + 1) // 2
        if q.kind == "choice":
            return q.options[0].value
        return None


class RandomPolicy(Policy):
    name = "random"

    def value(self, task, q, rng):
        return guess(q, rng)


class NoisyOraclePolicy(Policy):
    """The oracle's answer with probability ``p``, a guess otherwise (per question)."""

    name = "noisy"

    def __init__(self, p: float):
        if not 0.0 <= p <= 1.0:
            raise DebuggableError(f"p: expected a probability in [0, 1], got {p}.")
        self.p = p
        self._oracle = OraclePolicy()

    def value(self, task, q, rng):
        if rng.random() < self.p:
            return self._oracle.value(task, q, rng)
        return guess(q, rng)


class ReaderPolicy(OraclePolicy):
    name = "reader"

    def value(self, task, q, rng):
        z = task.meta.get("shown_activation_z")
        if q.key == "pick" and z is not None and not task.attention_check:
            score = np.asarray(z, dtype=np.float64) @ np.asarray(task.meta["weights"], dtype=np.float64)
            return q.options[int(np.argmax(score))].value
        return super().value(task, q, rng)


POLICIES = ("oracle", "noisy", "random", "reader")


def make_policy(name: str, noisy_accuracy: float = 0.6) -> Policy:
    if name == "oracle":
        return OraclePolicy()
    if name == "reader":
        return ReaderPolicy()
    if name == "random":
        return RandomPolicy()
    if name == "noisy":
        return NoisyOraclePolicy(noisy_accuracy)
    raise DebuggableError(f"policy {name!r}: expected one of {list(POLICIES)}.")


def policy_plan(annotators: list[str], counts: dict[str, int]) -> dict[str, str]:
    """``{annotator_id: policy}``: the first ``counts['oracle']`` annotators are oracles,
    the next noisy, then random, then readers (annotators beyond the counts are left out)."""
    total = sum(counts.values())
    if total > len(annotators):
        raise DebuggableError(f"simulate: {total} simulated annotators but the study has {len(annotators)}; "
                              "expected at most as many as [studies] annotators.")
    plan, i = {}, 0
    for name in POLICIES:
        for _ in range(counts.get(name, 0)):
            plan[annotators[i]] = name
            i += 1
    return plan


def _request(client, method: str, url: str, retries: int = 50, **kwargs):
    """An HTTP request retried on connection errors (a server restarting) for ~10 s."""
    import httpx

    for attempt in range(retries):
        try:
            return client.request(method, url, **kwargs)
        except httpx.TransportError:
            if attempt == retries - 1:
                raise
            time.sleep(0.2)


def annotate(base_url: str, token: str, policy: Policy, tasks: dict[str, Task], seed: int,
             *, elapsed_ms: tuple[int, int] = (2000, 20000)) -> dict[str, Any]:
    """One annotator's whole session through the JSON API; returns counts.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8123``.
        token: the annotator's token.
        policy: how to answer.
        tasks: every task by id (the policy reads keys and meta from them).
        seed: the annotator's generator seed.
        elapsed_ms: the range the reported answering time is drawn from (simulated).
    """
    import httpx

    rng = np.random.default_rng(seed)
    counts = {"answered": 0, "repeats": 0}
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        r = _request(client, "GET", f"/api/a/{token}")
        r.raise_for_status()
        total = int(r.json()["total"])
        for n in range(1, total + 1):
            r = _request(client, "GET", f"/api/a/{token}/tasks/{n}")
            r.raise_for_status()
            body = r.json()
            if body.get("answered"):
                continue
            task = tasks[body["task"]["id"]]
            payload = {"task_id": task.id, "answer": policy.answer(task, rng),
                       "elapsed_ms": int(rng.integers(*elapsed_ms))}
            r = _request(client, "POST", f"/api/a/{token}/tasks/{n}", json=payload)
            if r.status_code not in (200, 201):
                raise DebuggableError(f"the study app refused a simulated answer to {task.id!r} "
                                      f"({r.status_code}: {r.text[:200]}).")
            counts["answered" if r.status_code == 201 else "repeats"] += 1
    return counts


def run_simulated_annotators(study_set, base_url: str, plan: dict[str, str], *, noisy_accuracy: float = 0.6,
                             seed: int = 0, workers: int = 4) -> dict[str, dict[str, Any]]:
    """Answer ``study_set``'s tasks through ``base_url`` with the annotators of ``plan``
    (``{annotator_id: policy name}``), ``workers`` at a time; returns per annotator its
    policy and counts."""
    tasks = {t.id: t for s in study_set.studies.values() for t in s.tasks}

    def one(item):
        i, (annotator, name) = item
        token = study_set.signer.annotator_token(annotator)
        counts = annotate(base_url, token, make_policy(name, noisy_accuracy), tasks, seed=seed * 10007 + i)
        return annotator, {"policy": name, **counts}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(pool.map(one, enumerate(sorted(plan.items()))))


@contextlib.contextmanager
def background_server(study_set, database, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``study_set`` with ``database`` on a free port of ``host`` in a thread; yields the base URL."""
    import uvicorn

    from debuggable.studies.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(study_set, database), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise DebuggableError("the study app did not start on the loopback interface.")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()

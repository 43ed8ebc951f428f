"""The teacher's one cache protocol: look up, lease, generate what is missing, store, count.

`Teacher.answer` is the only code that reads the cache, takes leases, stores answers
and keeps the statistics. A backend implements `_generate`: answer the requests it
is handed, reporting each answer through `done` the moment it is finished, and
`answer` stores it at once. "Never ask the same question twice" lives here alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace

from tqdm import tqdm

from herd.teacher.cache import LEASE_S, Heartbeat, ResponseCache, new_holder
from herd.teacher.request import Answer, Request, failed, request_key

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.5     # how often a job waiting for another job's answers looks at the cache
WAIT_LOG_S = 60.0     # how often it says that it is still waiting
FAILURES_LOGGED = 20  # failed requests logged one by one per call; the rest are counted

Done = Callable[[str, Answer], None]  # done(request key, answer): one answer is finished


class Teacher:
    """Answers chat requests through the cache; subclasses implement `_generate`."""

    backend = "base"
    wait_poll_s = WAIT_POLL_S

    def __init__(self, model_id: str, cache: ResponseCache, lease_s: float = LEASE_S):
        self.model_id = model_id
        self.cache = cache
        self.lease_s = lease_s
        self.holder = new_holder()
        self._leased: set[str] = set()  # keys this teacher holds the lease of now
        self.stats = {"requests": 0, "cached": 0, "generated": 0, "failed": 0,
                      "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0}

    # --- what a backend implements ---------------------------------------------------------

    def _generate(self, todo: dict[str, Request], done: Done) -> None:
        """Answer every request in `todo` (cache key -> request), calling `done(key, answer)` as
        each finishes; a request that fails gets `failed(...)`, not an exception. Only requests
        that are neither cached nor being answered by another job arrive here."""
        raise NotImplementedError

    def _adopt(self, keys: list[str]) -> list[str]:
        """Those of `keys` this teacher answers without a lease, because work it started earlier
        still runs elsewhere (a submitted Batch API batch holds them)."""
        return []

    def _before_wait(self, waiting: Waiting) -> None:
        """Called before each wait for requests another job holds; may raise instead of waiting."""

    # --- the protocol ------------------------------------------------------------------------

    def answer(self, requests: list[Request], desc: str = "teacher") -> list[Answer]:
        """Answers in the order of `requests`: cached ones first, then the missing ones. A request
        repeated within the call is asked once; its repeats count as cached (nothing paid twice)."""
        start = time.perf_counter()
        keys = [request_key(self.backend, self.model_id, r) for r in requests]
        got = {k: a for k in dict.fromkeys(keys) if (a := self.cache.get(k)) is not None}
        missing = {k: r for k, r in zip(keys, requests) if k not in got}
        bar = tqdm(total=len(got) + len(missing), initial=len(got), desc=desc, mininterval=5, unit="req",
                   disable=not missing)  # a fully cached call draws no bar
        failures = []

        def done(key: str, ans: Answer) -> None:
            self._store(key, ans)  # at once: a killed job keeps every answer it got
            if not ans.ok:
                failures.append(key)
                if len(failures) <= FAILURES_LOGGED:
                    log.warning("teacher request %s failed: %s", key[:12], ans.error)
            if key in missing:
                got[key] = ans
                bar.update()

        try:
            if missing:
                self._answer_missing(missing, got, done, bar)
        finally:
            bar.update(len(got) - bar.n)
            bar.close()
            self.stats["seconds"] += time.perf_counter() - start
            if len(failures) > FAILURES_LOGGED:
                log.warning("... and %d more failed teacher requests (%d in all)",
                            len(failures) - FAILURES_LOGGED, len(failures))
        answers, seen = [], set()
        for key in keys:
            ans = got.get(key) or failed(f"no_answer: the teacher backend returned none for request {key[:12]}")
            answers.append(replace(ans, cached=True) if key in seen and ans.ok else ans)
            seen.add(key)
        self._count(answers)
        return answers

    def _answer_missing(self, missing: dict[str, Request], got: dict[str, Answer], done: Done, bar) -> None:
        """Generate the keys this teacher leases; wait for those another job holds, taking over
        any whose lease lapses."""
        with self._leasing():
            adopted = self._adopt(list(missing))
            skip = set(adopted)
            waiting = Waiting(self, [k for k in missing if k not in skip], got)
            now = adopted + waiting.poll(first=True)
            while now or waiting.keys:
                if now:
                    self._generate({k: missing[k] for k in now}, done)
                now = []
                while waiting.keys and not now:
                    self._before_wait(waiting)
                    time.sleep(waiting.interval)
                    now = waiting.poll()
                    bar.update(len(got) - bar.n)

    def _store(self, key: str, ans: Answer) -> None:
        """Cache a good answer and end its lease at once; a failed request's lease just ends
        (when this teacher holds it: a submitted batch's requests are leased to the batch)."""
        if ans.ok:
            self.cache.put(key, ans, holder=self.holder)
        elif key in self._leased:
            self.cache.release(self.holder, [key])
        self._leased.discard(key)

    def _count(self, answers: list[Answer]) -> None:
        for ans in answers:
            self.stats["requests"] += 1
            self.stats["cached"] += ans.cached
            self.stats["generated"] += ans.ok and not ans.cached
            self.stats["failed"] += not ans.ok
            self.stats["prompt_tokens"] += ans.prompt_tokens
            self.stats["completion_tokens"] += ans.completion_tokens

    @contextmanager
    def _leasing(self):
        """Renew this teacher's leases while the body runs; end those left when it ends."""
        beat = Heartbeat(self.cache.path, self.holder, self.lease_s)
        beat.start()
        try:
            yield
        finally:
            beat.stop()
            self.cache.release(self.holder)
            self._leased.clear()


class Waiting:
    """Keys another job holds the leases of: polled until their answers arrive in the cache
    (into `got`) or their leases lapse (then they are leased for this teacher)."""

    def __init__(self, teacher: Teacher, keys: list[str], got: dict[str, Answer]):
        self.teacher, self.keys, self.got = teacher, keys, got
        self.held: dict[str, str] = {}  # key -> the holder of its lease, at the last poll
        self.started = self.said = time.monotonic()
        self.interval = teacher.wait_poll_s  # seconds between polls

    def poll(self, first: bool = False) -> list[str]:
        """One look: take the answers that arrived, lease what is free; the keys now leased."""
        t = self.teacher
        t0 = time.perf_counter()
        todo = [k for k in self.keys if k not in self.got]
        claimed, self.held, answered = t.cache.claim(todo, t.holder, t.lease_s)
        for key in answered:
            self.got[key] = t.cache.get(key)
        mine = set(claimed)
        t._leased |= mine
        now = [k for k in todo if k in mine]
        self.keys = [k for k in todo if k in self.held]
        holders = ", ".join(sorted(set(self.held.values())))
        if first:
            if self.keys:
                log.info("waiting for %d requests answered by another job (holder %s); a killed "
                         "job's leases lapse %g s after its last renewal (teacher.lease_s)",
                         len(self.keys), holders, t.lease_s)
        elif now:
            log.warning("took over %d requests another job left unanswered (they failed there, "
                        "or it was killed and its leases lapsed)", len(now))
        elif self.keys and time.monotonic() - self.said >= WAIT_LOG_S:
            self.said = time.monotonic()
            log.info("still waiting (%.0f s) for %d requests answered by another job (holder %s)",
                     self.said - self.started, len(self.keys), holders)
        # thousands of waiting keys make a poll slow: then poll less often, not busily
        self.interval = max(t.wait_poll_s, 10 * (time.perf_counter() - t0))
        return now


def check_failures(answers: list[Answer], max_failed_fraction: float, where: str) -> None:
    failed_answers = [a for a in answers if not a.ok]
    if answers and len(failed_answers) / len(answers) > max_failed_fraction:
        raise RuntimeError(
            f"{where}: {len(failed_answers)} of {len(answers)} teacher requests failed "
            f"(more than {max_failed_fraction:.0%}); first error: {failed_answers[0].error}. "
            "Answers that succeeded are cached; rerun to retry only the failed ones."
        )

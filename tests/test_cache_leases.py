"""Jobs sharing the answer cache never ask the same question at the same time.

Unit tests of the leases in ResponseCache (claim, renew, release, expiry, dead
holders), then real processes: two OpenAI teachers answering overlapping
requests against the counting fault server, and a holder killed with SIGKILL
while its requests hang, whose keys the other process takes over.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fault_server import FaultServer, expected_answer

from herd.teacher import Answer, ResponseCache, Teacher, holder_alive, new_holder

TESTS = Path(__file__).resolve().parent


def ALIVE(holder: str) -> bool:
    return True


def test_claim_held_answered_and_release(cache):
    a, b = new_holder(), new_holder()
    assert a != b  # two teachers in one process are different holders
    assert cache.claim(["k1", "k2"], a, 60) == (["k1", "k2"], {}, [])
    assert cache.claim(["k1", "k2", "k3"], b, 60) == (["k3"], {"k1": a, "k2": a}, [])
    assert cache.claim(["k1"], a, 60) == (["k1"], {}, [])  # a holder renews its own

    cache.put("k1", Answer(text="one"), holder=a)  # the answer and the end of its lease, together
    assert cache.lease("k1") is None and cache.lease("k2")[0] == a
    assert cache.claim(["k1", "k2"], b, 60) == ([], {"k2": a}, ["k1"])

    cache.release(a, ["k2"])
    assert cache.claim(["k2"], b, 60) == (["k2"], {}, [])
    cache.release(b)
    assert cache.lease("k2") is None and cache.lease("k3") is None


def test_expired_lease_is_taken_over_and_renewal_keeps_it(cache):
    a, b = "elsewhere/0.0:11:aaaa", "elsewhere/0.0:22:bbbb"
    assert cache.claim(["x", "y"], a, 0.6, alive=ALIVE)[0] == ["x", "y"]
    time.sleep(0.35)
    assert cache.renew(a, 0.6) == 2
    time.sleep(0.35)  # 0.7 s after the claim, 0.35 s after the renewal: still held
    assert cache.claim(["x", "y"], b, 0.6, alive=ALIVE)[1] == {"x": a, "y": a}
    time.sleep(0.4)  # past the renewed expiry: lapsed
    assert cache.claim(["x", "y"], b, 0.6, alive=ALIVE)[0] == ["x", "y"]
    assert cache.lease("x")[0] == b
    cache.put("x", Answer(text="late"), holder=a)  # a late answer from the old holder keeps b's lease
    assert cache.lease("x")[0] == b


def test_dead_holder_on_this_machine_is_known_at_once(cache):
    me = new_holder()
    assert holder_alive(me)
    assert holder_alive("another-host/1.2:1:abcd")  # cannot be checked from here
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.5)  # it has exited, and nobody reaped it yet
    place = me.rsplit(":", 2)[0]
    assert not holder_alive(f"{place}:{zombie.pid}:0000")
    zombie.wait()
    dead = f"{place}:{zombie.pid}:0000"
    assert not holder_alive(dead)
    assert cache.claim(["k"], dead, 3600)[0] == ["k"]
    assert cache.claim(["k"], me, 60)[0] == ["k"]  # a long lease, but its holder is gone


def test_heartbeat_renews_while_working_and_leases_end_after(cache):
    teacher = Teacher("m", cache, lease_s=0.6)
    other = "elsewhere/0.0:33:cccc"
    with teacher._leasing():
        assert cache.claim(["k"], teacher.holder, teacher.lease_s)[0] == ["k"]
        time.sleep(1.5)  # 2.5 x lease_s, renewed every 0.2 s by the heartbeat thread
        assert cache.claim(["k"], other, 0.6, alive=ALIVE)[1] == {"k": teacher.holder}
    assert cache.lease("k") is None  # released when the call ended


CHILD = textwrap.dedent("""
    import json, logging, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from fault_server import requests_for
    from herd.teacher.openai_chat import OpenAITeacher
    from herd.teacher import ResponseCache
    base_url, cache_path, contents, opts = sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    teacher = OpenAITeacher(base_url, "fake-model", opts["key"], ResponseCache(cache_path),
                            max_in_flight=opts["in_flight"], lease_s=opts["lease_s"], timeout_s=120)
    teacher.wait_poll_s = 0.1
    if opts.get("holder"):
        teacher.holder = opts["holder"]  # as if it ran on another machine
    if opts.get("go"):
        Path(opts["go"] + "." + opts["key"]).touch()
        while not Path(opts["go"]).exists():
            time.sleep(0.01)
    answers = teacher.answer(requests_for(contents))
    print(json.dumps({"texts": [a.text for a in answers], "errors": [a.error for a in answers],
                      "stats": teacher.stats}))
""")


def start_child(server, cache_path, contents, log_path, **opts):
    opts = {"in_flight": 4, "lease_s": 60, **opts}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(TESTS), server.base_url, str(cache_path),
                             json.dumps(contents), json.dumps(opts)],
                            stdout=subprocess.PIPE, stderr=open(log_path, "w"), text=True)


def result(proc, timeout=120) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0
    return json.loads(out)


def wait_for(what, check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_two_processes_never_send_the_same_request_twice(tmp_path):
    cache_path, go = tmp_path / "cache.sqlite", tmp_path / "go"
    ResponseCache(cache_path).close()
    first = [f"question {i}" for i in range(24)]
    second = [f"question {i}" for i in range(12, 36)]  # half of it is also in `first`
    with FaultServer(latency=0.2) as server:
        procs = [start_child(server, cache_path, contents, tmp_path / f"{key}.log", key=key, go=str(go))
                 for key, contents in (("A", first), ("B", second))]
        wait_for("both children", lambda: all(Path(f"{go}.{k}").exists() for k in "AB"))
        go.touch()  # both ask at the same moment
        got = [result(p) for p in procs]

    for out, contents in zip(got, (first, second)):
        assert out["errors"] == [None] * len(contents)
        assert out["texts"] == [expected_answer(c) for c in contents]
    assert server.total == 36 and set(server.by_content.values()) == {1}  # each distinct request once
    assert sum(out["stats"]["generated"] for out in got) == 36
    assert sum(out["stats"]["cached"] for out in got) == 12  # the overlap, answered by the other job
    logs = [(tmp_path / f"{k}.log").read_text() for k in "AB"]
    assert sum("waiting for 12 requests answered by another job" in text for text in logs) == 1, logs


@pytest.mark.parametrize("where", ["same_machine", "other_machine"])
def test_killed_holder_is_taken_over(tmp_path, where):
    cache_path = tmp_path / "cache.sqlite"
    ResponseCache(cache_path).close()
    contents = [f"slow question {i}" for i in range(6)]
    # A's requests hang (the server holds them for a minute); B's are answered at once
    server = FaultServer(latency=lambda n, content: 60.0 if server.auth[n] == "Bearer A" else 0.05)
    other_machine = where == "other_machine"
    lease_s = 2.0 if other_machine else 60.0  # same machine: a dead holder is seen at once
    with server:
        a = start_child(server, cache_path, contents, tmp_path / "A.log", key="A", in_flight=3,
                        lease_s=lease_s, holder="elsewhere/0.0:1:aaaa" if other_machine else None)
        wait_for("A's requests in flight", lambda: server.total == 3)
        b = start_child(server, cache_path, contents, tmp_path / "B.log", key="B", lease_s=lease_s)
        wait_for("B to wait", lambda: "waiting for 6 requests" in (tmp_path / "B.log").read_text())
        time.sleep(2 * lease_s if other_machine else 1.0)
        assert server.total == 3 and b.poll() is None  # A's heartbeat kept its leases past lease_s

        os.kill(a.pid, signal.SIGKILL)
        killed = time.monotonic()
        a.wait()
        out = result(b)
        took = time.monotonic() - killed

    assert out["errors"] == [None] * 6 and out["texts"] == [expected_answer(c) for c in contents]
    assert out["stats"]["generated"] == 6
    assert "took over 6 requests" in (tmp_path / "B.log").read_text()
    assert server.total == 9  # the 3 that were in flight when A died are all that was paid twice
    assert sorted(server.by_content.values()) == [1, 1, 1, 2, 2, 2]
    if other_machine:
        assert 0.5 < took < lease_s + 3  # after the lease lapsed, not before
    else:
        assert took < 10  # long before the 60 s lease would lapse
    print(f"{where}: B had every answer {took:.2f} s after A was killed")


def test_batch_jobs_sharing_the_cache_submit_each_request_once(tmp_path):
    from fault_server import requests_for

    from herd.teacher.openai_batch import BatchesPending, HeldElsewhere, OpenAIBatchTeacher

    cache = ResponseCache(tmp_path / "cache" / "teacher.sqlite")

    def job(name: str) -> OpenAIBatchTeacher:  # one state file per job, one cache for all
        return OpenAIBatchTeacher(server.base_url, "fake-model", None, cache, tmp_path / f"{name}.json",
                                  poll_interval_s=0.01, wait=False, timeout_s=2.0)

    first, second = ["a", "b", "both1", "both2"], ["both1", "both2", "c"]
    with FaultServer(batch_polls=2) as server:
        with pytest.raises(BatchesPending):  # its batch runs; its requests are leased to the batch
            job("one").answer(requests_for(first))
        assert cache.holders() == {"batch:batch_000002": 4}
        with pytest.raises(HeldElsewhere, match="2 requests are being answered by another job.*batch:batch_000002"):
            job("three").answer(requests_for(["both1", "both2"]))
        with pytest.raises(BatchesPending):  # submits only "c"
            job("two").answer(requests_for(second))
        assert job("one").answer(requests_for(first))[2].text == expected_answer("both1")  # collected
        assert cache.holders() == {"batch:batch_000004": 1}  # "c", still running
        answers = job("two").answer(requests_for(second))
        assert cache.holders() == {}
    assert [a.text for a in answers] == [expected_answer(c) for c in second]
    assert server.files_uploaded == 2 and set(server.lines_by_content.values()) == {1}
    assert server.lines_by_content["c"] == 1 and server.lines_by_content["both1"] == 1
    cache.close()

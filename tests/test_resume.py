"""kill -9 in the middle of a response shard, then rerun: nothing lost, nothing paid twice.

A child process answers a shard through the openai backend against the
fault-injecting server on loopback; the test kills it with SIGKILL halfway,
reruns it, and checks the server's counts.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from fault_server import FaultServer, expected_answer

from herd.prompts import render_response
from herd.rng import derive_seed
from herd.teacher import Decoding, Request, ResponseCache, request_key

N = 40
SEED = 11
CFG = {"system_prompt": "Be concise.", "max_failed_fraction": 0.0,
       "decoding": {"temperature": 0.7, "top_p": 0.9, "max_tokens": 32}}

CHILD = textwrap.dedent(f"""
    import json, sys
    from herd import io, responses
    from herd.teacher.openai_chat import OpenAITeacher
    from herd.teacher import ResponseCache
    base_url, cache_path, records_path, out_path, cfg = sys.argv[1:6]
    cfg = json.loads(cfg)
    teacher = OpenAITeacher(base_url, "fake-model", None, ResponseCache(cache_path), max_in_flight=4)
    rows, failed, stats, ledger = responses.answer_shard(io.read_jsonl(records_path), cfg, {SEED}, teacher)
    io.write_jsonl(out_path, rows)
""")


def keys_for(records):
    return {
        request_key("openai", "fake-model",
                    Request(render_response(r["instruction"], CFG["system_prompt"]),
                            Decoding(**CFG["decoding"]), derive_seed(SEED, "responses", r["id"]))): r["instruction"]
        for r in records
    }


def test_kill_9_mid_shard_then_resume(tmp_path):
    records = [{"id": f"i{i:03d}", "instruction": f"Question number {i}?", "instruction_source": "s"}
               for i in range(N)]
    records_path = tmp_path / "records.jsonl"
    records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    cache_path, out_path = tmp_path / "cache.sqlite", tmp_path / "out.jsonl"
    ResponseCache(cache_path).close()  # the table exists before the child starts

    def child(server):
        return subprocess.Popen([sys.executable, "-c", CHILD, server.base_url, str(cache_path),
                                 str(records_path), str(out_path), json.dumps(CFG)],
                                stderr=subprocess.DEVNULL)

    with FaultServer(latency=0.15) as server:
        proc = child(server)
        deadline = time.monotonic() + 60
        while len(ResponseCache(cache_path)) < N // 2:
            assert proc.poll() is None and time.monotonic() < deadline, "child ended or stalled"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not out_path.exists()  # atomic output: a killed shard leaves no file

        keys = keys_for(records)
        cache = ResponseCache(cache_path)
        answered_before = {content for key, content in keys.items() if cache.get(key) is not None}
        sent_before = server.total
        assert N // 2 <= len(answered_before) < N

        proc = child(server)
        assert proc.wait(timeout=120) == 0

        rows = [json.loads(line) for line in out_path.read_text().splitlines()]
        assert sorted(r["id"] for r in rows) == [r["id"] for r in records]  # nothing lost or duplicated
        assert all(r["response"] == expected_answer(r["instruction"]) for r in rows)
        for content in answered_before:  # no answered request was sent again
            assert server.by_content[content] == 1, content
        in_flight_at_kill = sent_before - len(answered_before)
        assert 0 <= in_flight_at_kill <= 4
        assert server.total == N + in_flight_at_kill
        print(f"killed after {len(answered_before)} of {N} answered ({in_flight_at_kill} in flight); "
              f"server received {server.total} requests in all")

"""Real teachers on the packaged SmolLM2-135M GGUF: llama.cpp in process, llama.cpp's
OpenAI-compatible server on loopback through our client, and transformers."""
import socket
import subprocess
import sys
import time

import httpx
import pytest

from herd.dedup import rouge_l_f1, rouge_tokens
from herd.teacher import Decoding, Request, ResponseCache
from herd.teacher.huggingface import TransformersTeacher
from herd.teacher.llamacpp import LlamaCppTeacher
from herd.teacher.openai_chat import OpenAITeacher

DECODING = Decoding(temperature=0.0, top_p=1.0, max_tokens=12)
QUESTIONS = ["What is the capital of France?", "Name a colour of the sky."]


def requests():
    return [Request([{"role": "user", "content": q}], DECODING, seed=3) for q in QUESTIONS]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(smollm2_gguf, tmp_path_factory):
    """llama.cpp's own server, started as herd documents it: with the CPU kernels this host runs."""
    port = free_port()
    cache_dir = tmp_path_factory.mktemp("server-cache")
    proc = subprocess.Popen([sys.executable, "-m", "herd.native", "serve", "--cache-dir", str(cache_dir),
                             "--model", str(smollm2_gguf),
                             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "512"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "llama_cpp.server did not start"
        time.sleep(0.5)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def in_process(smollm2_gguf, tmp_path_factory):
    """Greedy answers of llama.cpp in process: the reference for the other engines."""
    cache = ResponseCache(tmp_path_factory.mktemp("ref") / "c.sqlite")
    return [a.text for a in LlamaCppTeacher(smollm2_gguf, "smollm2@ref", cache, n_ctx=512).answer(requests())]


def test_llama_cpp_server_through_our_client(llama_server, in_process, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    teacher = OpenAITeacher(llama_server, "smollm2", None, cache, max_in_flight=2, timeout_s=120)
    answers = teacher.answer(requests())
    assert all(a.ok and a.text.strip() for a in answers), [a.error for a in answers]
    # same engine and file, greedy: near-identical text (batch sizes differ, so not bit-exact)
    for got, ref in zip(answers, in_process):
        assert rouge_l_f1(rouge_tokens(got.text), rouge_tokens(ref)) >= 0.5, (got.text, ref)
    assert all(a.completion_tokens > 0 and a.prompt_tokens > 0 for a in answers)
    again = OpenAITeacher(llama_server, "smollm2", None, cache).answer(requests())
    assert [a.text for a in again] == [a.text for a in answers] and all(a.cached for a in again)


def test_llama_cpp_in_process_caches(smollm2_gguf, in_process, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    teacher = LlamaCppTeacher(smollm2_gguf, "smollm2@test", cache, n_ctx=512)
    answers = teacher.answer(requests())
    assert [a.text for a in answers] == in_process and all(a.text.strip() for a in answers)
    assert teacher.stats["generated"] == 2
    fresh = LlamaCppTeacher(smollm2_gguf, "smollm2@test", cache, n_ctx=512)
    assert [a.text for a in fresh.answer(requests())] == [a.text for a in answers]
    assert fresh._llm is None  # every answer came from the cache: the model was never loaded


def test_transformers_backend_on_the_gguf(smollm2_gguf, tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    teacher = TransformersTeacher(str(smollm2_gguf), "smollm2-hf", cache, batch_size=2)
    answers = teacher.answer(requests())
    assert all(a.ok and a.text.strip() for a in answers), [a.error for a in answers]
    assert all(0 < a.completion_tokens <= DECODING.max_tokens for a in answers)
    assert teacher.stats["generated"] == 2 and teacher.stats["cached"] == 0
    again = TransformersTeacher(str(smollm2_gguf), "smollm2-hf", cache).answer(requests())
    assert all(a.cached for a in again)


def test_llama_cpp_parallel_decoding_matches_one_at_a_time(smollm2_gguf, tmp_path):
    """Continuous batching: more requests than slots, sampled and greedy, one too long."""
    from herd import native

    kernels = native.llamacpp_kernels(smollm2_gguf, "auto", tmp_path, threads=2)
    llm = native.load_llama(smollm2_gguf, kernels, n_ctx=256, threads=2)
    one_at_a_time = [llm.create_chat_completion(r.messages, temperature=0.0, max_tokens=DECODING.max_tokens)
                     ["choices"][0]["message"]["content"] for r in requests()]
    del llm
    greedy = requests() * 3  # 2 greedy requests, each asked 3 times in the call: generated once
    sampled = [Request([{"role": "user", "content": f"Say something about the number {i}."}],
                       Decoding(temperature=0.9, top_p=0.9, max_tokens=10), seed=100 + i) for i in range(5)]
    too_long = Request([{"role": "user", "content": "word " * 400}], DECODING, seed=1)
    teacher = LlamaCppTeacher(smollm2_gguf, "smollm2@p4", ResponseCache(tmp_path / "a.sqlite"), n_ctx=256,
                              parallel=4)
    answers = teacher.answer(greedy + sampled + [too_long])
    # greedy decoding in a batch of 4 gives the answers of llama-cpp-python's own API, one at a time
    for got, ref in zip(answers[:6], one_at_a_time * 3):
        assert got.ok and rouge_l_f1(rouge_tokens(got.text), rouge_tokens(ref)) >= 0.8, (got.text, ref)
    assert all(a.ok and a.text.strip() and 0 < a.completion_tokens <= 10 for a in answers[6:11])
    assert all(a.finish_reason in ("stop", "length") for a in answers[:11])
    # a prompt that cannot fit is an error with its reason, never an empty answer
    assert not answers[11].ok and answers[11].text is None and "teacher.n_ctx" in answers[11].error
    # 7 distinct answerable requests through 4 slots (slots are reused); the 4 repeats count as cached
    assert teacher.stats == {**teacher.stats, "requests": 12, "cached": 4, "generated": 7, "failed": 1}
    # each request's seed fixes its sample: the same requests in reverse order, two at a time,
    # give the same texts (here; at other batch sizes llama.cpp may round differently: README)
    alone = LlamaCppTeacher(smollm2_gguf, "smollm2@p4", ResponseCache(tmp_path / "b.sqlite"), n_ctx=256,
                            parallel=2).answer(sampled[::-1])
    assert [a.text for a in alone[::-1]] == [a.text for a in answers[6:11]]

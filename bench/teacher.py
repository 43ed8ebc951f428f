"""Teacher throughput, as ratios measured in one run (no absolute targets).

1. client: herd's async OpenAI-compatible client against a plain sequential
   loop of the `openai` SDK, both against the same local server that answers
   every request after a fixed latency. The server's capacity for a client
   keeping C requests in flight is C / latency; the goal is >= 0.9 of it.
2. engine: the default local engine (llama.cpp in process, `parallel` requests
   decoded together, as the workflow runs it) against transformers `generate`
   on the same GGUF file (dequantized to float32), in generated tokens per
   second; the goal is >= 10x. Also printed: llama.cpp one request at a time,
   and transformers batched as herd's transformers backend runs it.
3. kernels: herd's llama.cpp engine with llama.cpp's fast CPU kernels (extra buffer
   types: AMX, repacked weights) against the plain ones (`teacher.cpu_kernels` fast
   and safe), and which one `auto` picks on this host (herd.native).

Usage: python bench/teacher.py [--requests 800] [--latency 0.25] [--in-flight 16]
                               [--tokens 48] [--threads 2] [--parallel 32]
                               [--engine-requests 32] [--skip-engine] [--skip-kernels]
                               [--kernels-only]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback test server

from fault_server import FaultServer  # noqa: E402

from herd.teacher import Decoding, Request, ResponseCache  # noqa: E402

PROMPT = "Explain in two sentences why the sea is salty."


def bench_client(n: int, latency: float, in_flight: int) -> dict:
    import openai

    from herd.teacher.openai_chat import OpenAITeacher

    reqs = [Request([{"role": "user", "content": f"{PROMPT} ({i})"}], Decoding(max_tokens=16), seed=i)
            for i in range(n)]
    with FaultServer(latency=latency) as server, tempfile.TemporaryDirectory() as tmp:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
        start = time.perf_counter()
        for r in reqs:
            sdk.chat.completions.create(model="m", messages=r.messages, max_tokens=16, seed=r.seed)
        sequential = n / (time.perf_counter() - start)

        teacher = OpenAITeacher(server.base_url, "m", None, ResponseCache(Path(tmp) / "c.sqlite"),
                                max_in_flight=in_flight)
        start = time.perf_counter()
        answers = teacher.answer(reqs, desc="bench")
        ours = n / (time.perf_counter() - start)
        assert all(a.ok for a in answers)
    capacity = in_flight / latency
    return {"sequential_rps": sequential, "herd_rps": ours, "capacity_rps": capacity,
            "herd_vs_capacity": ours / capacity, "herd_vs_sequential": ours / sequential}


TOPICS = ["volcanoes", "the printing press", "photosynthesis", "tides", "compound interest", "vaccines",
          "the Roman roads", "jet engines", "coral reefs", "the blockchain", "glaciers", "the violin",
          "sourdough bread", "black holes", "the immune system", "wind turbines"]


def engine_requests(n: int, tokens: int) -> list[Request]:
    return [Request([{"role": "user", "content": f"Write a short paragraph about {TOPICS[i % len(TOPICS)]}."}],
                    Decoding(temperature=0.7, top_p=0.9, max_tokens=tokens), seed=i) for i in range(n)]


def _teacher_tps(teacher, reqs: list[Request]) -> float:
    start = time.perf_counter()
    answers = teacher.answer(reqs, desc=teacher.backend)
    seconds = time.perf_counter() - start
    assert all(a.ok and not a.cached for a in answers), [a.error for a in answers if not a.ok]
    return sum(a.completion_tokens for a in answers) / seconds


def bench_engine(gguf: Path, tokens: int, threads: int, parallel: int, n: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from herd import native
    from herd.teacher.huggingface import TransformersTeacher
    from herd.teacher.llamacpp import LlamaCppTeacher

    torch.set_num_threads(threads)
    reqs = engine_requests(n, tokens)
    with tempfile.TemporaryDirectory() as tmp:
        # herd's default engine, as the workflow runs it
        herd = LlamaCppTeacher(gguf, "bench", ResponseCache(Path(tmp) / "a.sqlite"), n_ctx=512,
                               threads=threads, parallel=parallel)
        herd.answer(reqs[:1], desc="warm-up")
        herd.cache = ResponseCache(Path(tmp) / "b.sqlite")
        herd_tps = _teacher_tps(herd, reqs)

        # llama.cpp one request at a time (llama-cpp-python's own API)
        kernels = native.llamacpp_kernels(gguf, "auto", tmp, threads)
        llm = native.load_llama(gguf, kernels, n_ctx=512, threads=threads)
        start, done = time.perf_counter(), 0
        for r in reqs[:4]:
            out = llm.create_chat_completion(r.messages, max_tokens=tokens, temperature=0.7, top_p=0.9, seed=r.seed)
            done += out["usage"]["completion_tokens"]
        single_tps = done / (time.perf_counter() - start)
        del llm

        # transformers generate on the same GGUF (dequantized to float32), one request at a time
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
        ids = tok.apply_chat_template(reqs[0].messages, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        model.generate(**ids, max_new_tokens=4, do_sample=False)  # warm up
        start = time.perf_counter()
        gen = model.generate(**ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True,
                             temperature=0.7, top_p=0.9)
        hf_tps = (gen.shape[1] - ids["input_ids"].shape[1]) / (time.perf_counter() - start)
        del model

        # herd's transformers backend: batched generate, `parallel` requests per batch
        hf = TransformersTeacher(str(gguf), "bench", ResponseCache(Path(tmp) / "c.sqlite"), batch_size=parallel)
        hf_batched_tps = _teacher_tps(hf, reqs)
    return {"herd_tps": herd_tps, "llamacpp_single_tps": single_tps, "transformers_tps": hf_tps,
            "transformers_batched_tps": hf_batched_tps, "ratio": herd_tps / hf_tps,
            "ratio_batched": herd_tps / hf_batched_tps}


def bench_kernels(gguf: Path, tokens: int, threads: int, parallel: int, n: int) -> dict:
    from herd import native
    from herd.teacher.llamacpp import LlamaCppTeacher

    reqs = engine_requests(n, tokens)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["auto"] = native.llamacpp_kernels(gguf, "auto", tmp, threads)
        for kernels in ("fast", "safe"):
            teacher = LlamaCppTeacher(gguf, "bench", ResponseCache(Path(tmp) / f"{kernels}-warm.sqlite"),
                                      n_ctx=512, threads=threads, parallel=parallel)
            teacher.cpu_kernels = kernels
            teacher.answer(reqs[:1], desc="warm-up")
            teacher.cache = ResponseCache(Path(tmp) / f"{kernels}.sqlite")
            out[kernels] = _teacher_tps(teacher, reqs)
            teacher.decoder.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--latency", type=float, default=0.25, help="seconds the server takes per request")
    ap.add_argument("--in-flight", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--gguf", type=Path, default=ROOT / "results/teacher_model/model.gguf")
    ap.add_argument("--threads", type=int, default=2, help="threads for both engines")
    ap.add_argument("--parallel", type=int, default=32,
                    help="requests decoded together (teacher.parallel, whose default is 32)")
    ap.add_argument("--engine-requests", type=int, default=32)
    ap.add_argument("--skip-engine", action="store_true")
    ap.add_argument("--skip-kernels", action="store_true")
    ap.add_argument("--kernels-only", action="store_true", help="only part 3 (fast against safe kernels)")
    args = ap.parse_args()
    if not args.kernels_only:
        run_client(args)
    engine = [] if args.skip_engine or args.kernels_only else [run_engine]
    engine += [] if args.skip_kernels else [run_kernels]
    if engine and not args.gguf.exists():
        sys.exit(f"{args.gguf} not found: build it with `snakemake --cores 2 results/teacher_model/model.gguf`")
    for part in engine:
        part(args)


def run_client(args) -> None:
    c = bench_client(args.requests, args.latency, args.in_flight)
    print(f"client: {args.requests} requests, {args.latency * 1000:.0f} ms each, {args.in_flight} in flight")
    print(f"  openai SDK sequential {c['sequential_rps']:.1f} req/s; herd {c['herd_rps']:.1f} req/s; "
          f"server capacity {c['capacity_rps']:.1f} req/s")
    print(f"  ratio herd / capacity   = {c['herd_vs_capacity']:.2f}  (goal >= 0.9)")
    print(f"  ratio herd / sequential = {c['herd_vs_sequential']:.1f}x")


def run_engine(args) -> None:
    e = bench_engine(args.gguf, args.tokens, args.threads, args.parallel, args.engine_requests)
    print(f"engine: {args.gguf.name}, {args.engine_requests} requests of at most {args.tokens} new tokens, "
          f"sampled, {args.threads} thread(s) each")
    print(f"  herd llamacpp backend ({args.parallel} in parallel) {e['herd_tps']:.1f} tok/s; "
          f"llama.cpp one at a time {e['llamacpp_single_tps']:.1f} tok/s")
    print(f"  transformers generate {e['transformers_tps']:.1f} tok/s; "
          f"batched ({args.parallel} per batch, herd's transformers backend) {e['transformers_batched_tps']:.1f} tok/s")
    print(f"  ratio herd engine / transformers generate = {e['ratio']:.1f}x  (goal >= 10)")
    print(f"  ratio herd engine / transformers batched generate = {e['ratio_batched']:.1f}x")


def run_kernels(args) -> None:
    k = bench_kernels(args.gguf, args.tokens, args.threads, args.parallel, args.engine_requests)
    print(f"kernels: {args.gguf.name}, {args.engine_requests} requests, {args.parallel} in parallel, "
          f"{args.threads} thread(s); teacher.cpu_kernels auto picks {k['auto']!r} on this host")
    print(f"  fast (extra buffer types) {k['fast']:.1f} tok/s; safe {k['safe']:.1f} tok/s")
    print(f"  ratio fast / safe = {k['fast'] / k['safe']:.2f}")

if __name__ == "__main__":
    main()

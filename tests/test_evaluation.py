"""Student evaluation on tiny scratch models: lm-eval adapter, ONNX variants, benchmarks, ROUGE-L."""

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance

from herd import benchmarks, evaluation
from herd.assets import build_scratch
from herd.io import dir_size_mb, read_jsonl, write_jsonl
from herd.prompts import student_prompt
from herd.students import encode_causal

ROOT = Path(__file__).parents[2] / "shared/data/benchmarks"
needs_data = pytest.mark.skipif(not ROOT.is_dir(), reason=f"benchmark data not found at {ROOT}")

GPT2_ARCH = {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256}
T5_ARCH = {"d_model": 32, "d_ff": 64, "d_kv": 16, "num_layers": 2, "num_heads": 2}
PAIRS = [  # (context, continuation): a trailing space in the context, different lengths, an empty context
    ("Question: What is the boiling point of water?\nAnswer:", " 100 degrees Celsius"),
    ("The sky is ", "blue"),
    ("Hello", " world, and a much longer continuation to force right padding in the batch"),
    ("", "Just a continuation"),
]
ORT_TOLERANCE = 1e-3


def prompt(instruction: str) -> str:
    return f"### Instruction:\n{instruction}\n\n### Response:\n"


# ---------------------------------------------------------------- tiny models, built once


@pytest.fixture(scope="session")
def models(tmp_path_factory, tokenizer_dir) -> dict[str, Path]:
    """Tiny random GPT-2 and T5 checkpoints, their ONNX exports, and an int8 ONNX GPT-2."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.exporters.onnx import main_export

    base = tmp_path_factory.mktemp("models")
    out = {"gpt2": base / "gpt2", "t5": base / "t5"}
    build_scratch("gpt2", GPT2_ARCH, str(tokenizer_dir), out["gpt2"], seed=0)
    build_scratch("t5", T5_ARCH, str(tokenizer_dir), out["t5"], seed=0)
    out["gpt2-onnx"], out["t5-onnx"] = base / "gpt2-onnx", base / "t5-onnx"
    main_export(str(out["gpt2"]), output=out["gpt2-onnx"], task="text-generation-with-past")
    main_export(str(out["t5"]), output=out["t5-onnx"], task="text2text-generation-with-past")
    out["gpt2-int8"] = base / "gpt2-int8"
    shutil.copytree(out["gpt2-onnx"], out["gpt2-int8"], ignore=shutil.ignore_patterns("*.onnx"))
    quantize_dynamic(out["gpt2-onnx"] / "model.onnx", out["gpt2-int8"] / "model.onnx", weight_type=QuantType.QInt8)
    return out


def requests(pairs=PAIRS) -> list[Instance]:
    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


# ---------------------------------------------------------------- hand computations


def split_like_lm_eval(tokenizer, context: str, continuation: str, seq2seq: bool):
    """lm-eval's convention: trailing context whitespace belongs to the continuation;
    the tokenizer's default special tokens; an empty context becomes BOS."""
    stripped = context.rstrip()
    continuation = context[len(stripped) :] + continuation
    if not stripped:
        return [tokenizer.bos_token_id], tokenizer.encode(continuation, add_special_tokens=False)
    if seq2seq:
        return tokenizer.encode(stripped), tokenizer.encode(continuation, add_special_tokens=False)
    whole = tokenizer.encode(stripped + continuation)
    ctx = tokenizer.encode(stripped)
    return ctx, whole[len(ctx) :]


def hand_causal(model, tokenizer, context, continuation):
    ctx, cont = split_like_lm_eval(tokenizer, context, continuation, seq2seq=False)
    with torch.no_grad():
        logits = model(torch.tensor([ctx + cont])).logits[0]
    logprobs = F.log_softmax(logits[len(ctx) - 1 : -1], dim=-1)
    target = torch.tensor(cont)
    return logprobs[torch.arange(len(cont)), target].sum().item(), bool((logprobs.argmax(-1) == target).all())


def hand_seq2seq(model, tokenizer, context, continuation):
    ctx, cont = split_like_lm_eval(tokenizer, context, continuation, seq2seq=True)
    decoder_input = [model.config.decoder_start_token_id] + cont[:-1]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ctx]), decoder_input_ids=torch.tensor([decoder_input])).logits[0]
    logprobs = F.log_softmax(logits, dim=-1)
    target = torch.tensor(cont)
    return logprobs[torch.arange(len(cont)), target].sum().item(), bool((logprobs.argmax(-1) == target).all())


@pytest.mark.parametrize("family,hand", [("gpt2", hand_causal), ("t5", hand_seq2seq)])
def test_loglikelihood_equals_hand_computation(models, family, hand):
    model, tokenizer = evaluation.load_variant("pytorch", models[family])
    got = evaluation.HerdLM(model, tokenizer, batch_size=3).loglikelihood(requests())
    assert len(got) == len(PAIRS)
    for (context, continuation), (ll, greedy) in zip(PAIRS, got):
        want_ll, want_greedy = hand(model, tokenizer, context, continuation)
        assert ll == pytest.approx(want_ll, abs=1e-4)
        assert greedy == want_greedy
        assert ll < 0


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_loglikelihood_matches_lm_eval_hflm(models, family):
    """Same numbers as lm-eval's own Hugging Face backend on the same model."""
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = evaluation.load_variant("pytorch", models[family])
    ours = evaluation.HerdLM(model, tokenizer, batch_size=2).loglikelihood(requests())
    theirs = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2, device="cpu").loglikelihood(requests())
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=1e-4) and greedy_a == greedy_b


def test_choices_that_share_their_input_are_scored_from_one_row(models):
    """One-token answers to one question (yes/no) need one forward row between them; the scores
    are those of scoring each alone."""
    model, tokenizer = evaluation.load_variant("pytorch", models["gpt2"])
    one = [w for w in (" yes", " no", " a", " b", " the", " x", " y", " 1", " 2", "a", "b", "x", "y")
           if len(tokenizer.encode(w, add_special_tokens=False)) == 1]
    assert len(one) >= 2, "no two one-token answers in this tokenizer"
    pairs = [("Is the sky blue? Answer:", one[0]), ("Is the sky blue? Answer:", one[1]), ("Other question:", one[0])]
    widths = []
    hook = model.register_forward_pre_hook(lambda m, args, kwargs: widths.append(len(kwargs["input_ids"])),
                                           with_kwargs=True)
    try:
        together = evaluation.HerdLM(model, tokenizer, batch_size=8).loglikelihood(requests(pairs))
    finally:
        hook.remove()
    assert widths == [2]  # two distinct contexts, one forward pass
    alone = [evaluation.HerdLM(model, tokenizer).loglikelihood(requests([p]))[0] for p in pairs]
    for (a, ga), (b, gb) in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb


def test_greedy_flag_is_true_for_the_argmax_continuation(models):
    model, tokenizer = evaluation.load_variant("pytorch", models["gpt2"])
    context = "Once upon a time"
    ids = tokenizer.encode(context)
    with torch.no_grad():
        best = model(torch.tensor([ids])).logits[0, -1].argmax().item()
    continuation = tokenizer.decode([best])
    if tokenizer.encode(context + continuation) != ids + [best]:
        pytest.skip("the argmax token does not round-trip through the tokenizer")
    [(ll, greedy)] = evaluation.HerdLM(model, tokenizer).loglikelihood(requests([(context, continuation)]))
    assert greedy and ll < 0


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_onnx_fp32_agrees_with_pytorch(models, family):
    from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSeq2SeqLM

    pt = evaluation.HerdLM(*evaluation.load_variant("pytorch", models[family])).loglikelihood(requests())
    ort_model, tokenizer = evaluation.load_variant("onnx", models[f"{family}-onnx"])
    assert isinstance(ort_model, ORTModelForSeq2SeqLM if family == "t5" else ORTModelForCausalLM)
    ort = evaluation.HerdLM(ort_model, tokenizer).loglikelihood(requests())
    for (a, _), (b, _) in zip(pt, ort):
        assert a == pytest.approx(b, abs=ORT_TOLERANCE)


def test_onnx_int8_loads_and_scores(models):
    model, tokenizer = evaluation.load_variant("onnx-int8", models["gpt2-int8"])
    got = evaluation.HerdLM(model, tokenizer).loglikelihood(requests())
    assert all(math.isfinite(ll) and ll < 0 for ll, _ in got)
    assert dir_size_mb(models["gpt2-int8"]) < dir_size_mb(models["gpt2-onnx"])


def test_unknown_variant_is_rejected(models):
    with pytest.raises(ValueError, match="unknown model variant"):
        evaluation.load_variant("gguf", models["gpt2"])


def test_only_multiple_choice_is_supported(models):
    lm = evaluation.HerdLM(*evaluation.load_variant("pytorch", models["gpt2"]))
    with pytest.raises(NotImplementedError, match="multiple-choice"):
        lm.generate_until([])
    with pytest.raises(NotImplementedError, match="multiple-choice"):
        lm.loglikelihood_rolling([])


# ---------------------------------------------------------------- benchmarks


@needs_data
@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_run_benchmarks_on_local_data(models, family, tmp_path):
    lm = evaluation.HerdLM(*evaluation.load_variant("pytorch", models[family]))
    items = []
    rows = evaluation.run_benchmarks(lm, ["arc_easy", "boolq", "piqa"], ROOT, tmp_path, limit=5, seed=0, items=items)
    by_key = {(r["task"], r["metric"]): r for r in rows}
    # every item's score is kept, for paired comparisons: their mean is the row's value
    for (task, metric), row in by_key.items():
        scores = [i["value"] for i in items if i["task"] == task and i["metric"] == metric]
        assert len(scores) == 5 and set(scores) <= {0.0, 1.0}
        assert math.isclose(sum(scores) / 5, row["value"])
    assert len({(i["task"], i["item"], i["metric"]) for i in items}) == len(items)
    assert set(by_key) == {
        ("arc_easy", "acc"), ("arc_easy", "acc_norm"), ("boolq", "acc"), ("piqa", "acc"), ("piqa", "acc_norm"),
    }
    for row in rows:
        assert row["status"] == "ok"
        assert row["n"] == 5
        assert 0.0 <= row["value"] <= 1.0
        assert math.isfinite(row["stderr"])
        assert row["prompt"] == "plain"
    assert {r["task"]: r["source"] for r in rows} == {
        "arc_easy": "local ARC/ARC-e/ARC-Easy-Test.jsonl", "boolq": "local SuperGLUE/BoolQ/val.jsonl",
        "piqa": "local piqa/dev.jsonl"}
    assert not list(Path.cwd().glob("*.db"))  # no request cache left in the working directory


def test_missing_data_gives_unavailable_rows(models, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    lm = evaluation.HerdLM(*evaluation.load_variant("pytorch", models["gpt2"]))
    for root in (None, tmp_path / "no-such-root"):
        rows = evaluation.run_benchmarks(lm, ["arc_easy", "piqa"], root, tmp_path / "work", 5, 0)
        assert [r["task"] for r in rows] == ["arc_easy", "piqa"]
        for row in rows:
            assert math.isnan(row["value"]) and row["n"] == 0
            assert row["status"].startswith("unavailable: ")
    assert "no-such-root/ARC/ARC-e/ARC-Easy-Test.jsonl" in rows[0]["status"]
    assert "piqa/dev.jsonl" in rows[1]["status"]


# ---------------------------------------------------------------- ROUGE-L and the whole student


def test_rouge_l_scores():
    assert evaluation.rouge_l("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)
    assert evaluation.rouge_l("dogs bark", "the cat sat") == 0.0
    assert evaluation.rouge_l("", "the cat sat") == 0.0
    # LCS "the cat the mat" (4 of 6 words each way)
    assert evaluation.rouge_l("the cat lay on the mat", "the cat sat upon the mat") == pytest.approx(4 / 6)


RECORDS = [
    {"instruction": "Name a primary colour.", "response": "Red is a primary colour."},
    {"instruction": "What is the capital of France?", "response": "The capital of France is Paris."},
    {"instruction": "Give a synonym of happy.", "response": "Joyful."},
    {"instruction": "Count to three.", "response": "One, two, three."},
]


@pytest.mark.parametrize("family,variant", [("gpt2", "pytorch"), ("gpt2-onnx", "onnx"), ("t5-onnx", "onnx")])
def test_rouge_vs_teacher(models, family, variant):
    model, tokenizer = evaluation.load_variant(variant, models[family])
    got = evaluation.rouge_vs_teacher(model, tokenizer, RECORDS, prompt, max_new_tokens=6)
    assert got["n"] == len(RECORDS)
    assert len(got["samples"]) == 3
    assert [s[0] for s in got["samples"]] == [r["instruction"] for r in RECORDS[:3]]
    assert [s[2] for s in got["samples"]] == [r["response"] for r in RECORDS[:3]]
    assert 0.0 <= got["value"] <= 1.0


def test_rouge_vs_teacher_mean_matches_answers(models, monkeypatch):
    """The value is the mean ROUGE-L of each student answer against its teacher response."""
    answers = ["Red is a colour.", "Paris.", "Sad.", "One, two, three."]
    monkeypatch.setattr(evaluation, "generate", lambda *a, **k: answers)
    got = evaluation.rouge_vs_teacher(None, None, RECORDS, prompt, max_new_tokens=6)
    want = [evaluation.rouge_l(a, r["response"]) for a, r in zip(answers, RECORDS)]
    assert got["value"] == pytest.approx(sum(want) / 4)
    assert want[3] == pytest.approx(1.0) and want[2] == 0.0
    assert got["samples"][1] == (RECORDS[1]["instruction"], "Paris.", RECORDS[1]["response"])


def test_generation_batches_match_single_prompts(models):
    model, tokenizer = evaluation.load_variant("pytorch", models["gpt2"])
    prompts = [prompt(r["instruction"]) for r in RECORDS]
    batched = evaluation.generate(model, tokenizer, prompts, max_new_tokens=5, batch_size=4)
    single = [evaluation.generate(model, tokenizer, [p], max_new_tokens=5)[0] for p in prompts]
    assert batched == single


@needs_data
def test_evaluate_student_rows(models, tmp_path):
    rows = evaluation.evaluate_student(
        "tiny-gpt2", "onnx", models["gpt2-onnx"], RECORDS[:2], ["arc_easy", "boolq"], ROOT, tmp_path,
        limit=3, seed=0, max_new_tokens=4, prompt_fn=prompt,
    )
    assert all(list(r) == list(evaluation.COLUMNS) for r in rows)
    assert [(r["task"], r["metric"]) for r in rows] == [
        ("arc_easy", "acc"), ("arc_easy", "acc_norm"), ("boolq", "acc"), ("teacher_rougeL", "rougeL_f1"),
    ]
    assert {r["student"] for r in rows} == {"tiny-gpt2"} and {r["variant"] for r in rows} == {"onnx"}
    assert {r["model_size_mb"] for r in rows} == {dir_size_mb(models["gpt2-onnx"])}
    assert rows[0]["model_size_mb"] > 0
    assert all(r["status"] == "ok" for r in rows)
    assert rows[-1]["n"] == 2 and 0.0 <= rows[-1]["value"] <= 1.0
    assert [r["n"] for r in rows[:3]] == [3, 3, 3]


def test_evaluate_student_without_records(models, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    rows = evaluation.evaluate_student(
        "tiny-t5", "pytorch", models["t5"], [], ["arc_easy"], None, tmp_path,
        limit=3, seed=0, max_new_tokens=4, prompt_fn=prompt,
    )
    assert [r["task"] for r in rows] == ["arc_easy", "teacher_rougeL"]
    assert all(r["status"].startswith("unavailable: ") for r in rows)


def test_task_without_local_data_or_hub(models, tmp_path, monkeypatch):
    """A known lm-eval task with no local converter is unavailable offline; an unknown name is an error."""
    monkeypatch.setattr(evaluation, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    lm = evaluation.HerdLM(*evaluation.load_variant("pytorch", models["gpt2"]))
    [row] = evaluation.run_benchmarks(lm, ["lambada_openai"], ROOT, tmp_path, 5, 0)
    assert row["status"].startswith("unavailable: no local converter for 'lambada_openai'")
    assert "Hub is not reachable" in row["status"] and row["source"] == "hub"
    with pytest.raises(KeyError, match="no_such_task"):
        evaluation.run_benchmarks(lm, ["no_such_task"], ROOT, tmp_path, 5, 0)


# ---------------------------------------------------------------- any LM, every metric, unsupported tasks


@needs_data
def test_run_benchmarks_scores_any_lm_eval_lm(models, tmp_path):
    """run_benchmarks takes an lm-eval LM: lm-eval's own HFLM gives the same rows and items as HerdLM."""
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = evaluation.load_variant("pytorch", models["gpt2"])
    got = {}
    for name, lm in [("herd", evaluation.HerdLM(model, tokenizer)),
                     ("hf", HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, device="cpu"))]:
        items = []
        rows = evaluation.run_benchmarks(lm, ["arc_easy"], ROOT, tmp_path / name, limit=6, seed=0, items=items)
        got[name] = rows, items
    assert got["herd"][0] == got["hf"][0] and got["herd"][1] == got["hf"][1]
    assert [r["metric"] for r in got["hf"][0]] == ["acc", "acc_norm"]


@needs_data
def test_every_reported_metric_gives_a_row(models, tmp_path):
    """cb and mrpc report acc and f1: both are rows; f1 has no per-item score (it pools (gold, pred) pairs)."""
    lm = evaluation.HerdLM(*evaluation.load_variant("pytorch", models["gpt2"]))
    items = []
    rows = evaluation.run_benchmarks(lm, ["cb", "mrpc"], ROOT, tmp_path, limit=8, seed=0, items=items)
    assert [(r["task"], r["metric"]) for r in rows] == [("cb", "acc"), ("cb", "f1"), ("mrpc", "acc"), ("mrpc", "f1")]
    assert all(r["status"] == "ok" and r["n"] == 8 and 0.0 <= r["value"] <= 1.0 for r in rows)
    assert {(i["task"], i["metric"]) for i in items} == {("cb", "acc"), ("mrpc", "acc")}
    assert len(items) == 16
    mrpc = next(r for r in rows if r["task"] == "mrpc")
    assert mrpc["source"].startswith("local mrpc/msr_paraphrase_test.txt") and "MSR test" in mrpc["source"]


RECORD_ITEMS = [  # ReCoRD, in the schema of aps/super_glue record
    {"passage": "The city council of Lyon approved a new tram line.\n@highlight\nThe line opens in 2027",
     "query": "@placeholder will get a new tram line.", "entities": ["Lyon", "Paris", "council"],
     "answers": ["Lyon"], "idx": {"passage": 0, "query": 0}},
    {"passage": "Marie Curie won two Nobel prizes, in physics and chemistry.\n@highlight\nShe was born in Warsaw",
     "query": "@placeholder won a Nobel prize in chemistry.", "entities": ["Marie Curie", "Warsaw"],
     "answers": ["Marie Curie"], "idx": {"passage": 1, "query": 1}},
    {"passage": "The Nile flows north through Egypt into the Mediterranean Sea.\n@highlight\nA long river",
     "query": "The Nile ends in the @placeholder.", "entities": ["Egypt", "Mediterranean Sea", "Nile"],
     "answers": ["Mediterranean Sea"], "idx": {"passage": 2, "query": 2}},
]


def test_record_gives_f1_and_em_rows_with_items(models, tmp_path, monkeypatch):
    """ReCoRD's f1 and em are per-item numbers: rows and item scores for both, the row the items' mean."""
    root = tmp_path / "root"
    write_jsonl(root / "record/val.jsonl", RECORD_ITEMS)
    monkeypatch.setitem(benchmarks.TASKS, "record", benchmarks.LocalTask(
        ("record/val.jsonl",), lambda paths: read_jsonl(paths[0]), "super_glue/record"))
    lm = evaluation.HerdLM(*evaluation.load_variant("pytorch", models["gpt2"]))
    items = []
    rows = evaluation.run_benchmarks(lm, ["record"], root, tmp_path / "work", limit=None, seed=0, items=items)
    assert [r["metric"] for r in rows] == ["f1", "em"]
    for row in rows:
        scores = [i["value"] for i in items if i["metric"] == row["metric"]]
        assert len(scores) == 3 and row["n"] == 3 and row["status"] == "ok"
        assert math.isclose(sum(scores) / 3, row["value"])
    assert rows[0]["source"] == "local record/val.jsonl"


def test_generative_and_perplexity_tasks_are_unsupported(models, tmp_path, monkeypatch):
    """One row each, and the tasks never reach lm-eval (neither their data nor the model is touched)."""
    def tripwire(*args, **kwargs):
        raise AssertionError("an unsupported task was loaded or evaluated")

    monkeypatch.setattr(evaluation, "_load_task", tripwire)
    monkeypatch.setattr("lm_eval.simple_evaluate", tripwire)
    lm = evaluation.HerdLM(*evaluation.load_variant("pytorch", models["gpt2"]))
    rows = evaluation.run_benchmarks(lm, ["gsm8k", "wikitext"], ROOT, tmp_path, 5, 0)
    assert [(r["task"], r["metric"], r["status"]) for r in rows] == [
        ("gsm8k", "exact_match", "unsupported: generate_until tasks are not scored by herd"),
        ("wikitext", "word_perplexity", "unsupported: loglikelihood_rolling tasks are not scored by herd"),
    ]
    assert all(math.isnan(r["value"]) and r["n"] == 0 for r in rows)


# ---------------------------------------------------------------- the instruction template


def test_instruction_template_rewrites_the_scored_context(models):
    """Wrapped: the same numbers as the inner LM on contexts rendered through the prompt, not the plain ones;
    the same wrapper works over lm-eval's HFLM; the caller's requests stay untouched."""
    from lm_eval.models.huggingface import HFLM

    model, tokenizer = evaluation.load_variant("pytorch", models["gpt2"])
    reqs = requests()
    herd = evaluation.HerdLM(model, tokenizer, batch_size=2)
    wrapped = evaluation.InstructionTemplateLM(herd, prompt).loglikelihood(reqs)
    plain = herd.loglikelihood(requests())
    by_hand = herd.loglikelihood(requests([(prompt(c), x) for c, x in PAIRS]))
    assert [ll for ll, _ in wrapped] == pytest.approx([ll for ll, _ in by_hand], abs=1e-5)
    assert all(abs(a - b) > 1e-3 for (a, _), (b, _) in zip(wrapped, plain))
    assert [r.args for r in reqs] == PAIRS
    hf = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2, device="cpu")
    via_hf = evaluation.InstructionTemplateLM(hf, prompt).loglikelihood(requests())
    assert [ll for ll, _ in via_hf] == pytest.approx([ll for ll, _ in by_hand], abs=1e-4)
    assert evaluation.prompt_style(herd) == "plain"
    assert evaluation.prompt_style(evaluation.InstructionTemplateLM(herd)) == "instruction_template"


@needs_data
def test_evaluate_student_records_the_instruction_template(models, tmp_path):
    items = {}
    rows = {}
    for template in (False, True):
        items[template] = []
        rows[template] = evaluation.evaluate_student(
            "tiny-gpt2", "pytorch", models["gpt2"], RECORDS[:1], ["arc_easy"], ROOT, tmp_path / str(template),
            limit=4, seed=0, max_new_tokens=2, prompt_fn=prompt, items=items[template], instruction_template=template,
            gpus=0)
    assert [r["prompt"] for r in rows[False]] == ["plain", "plain", "instruction_template"]
    assert [r["prompt"] for r in rows[True]] == ["instruction_template"] * 3
    # the ROUGE row is the same either way: it always uses the student's prompt
    assert rows[False][-1]["value"] == rows[True][-1]["value"]
    assert rows[True][-1]["source"] == "results/dataset/validation.jsonl"


# ---------------------------------------------------------------- placement and generation order


def test_eval_device_follows_the_students_placement_rules():
    assert evaluation.eval_device(None, 0) == "cpu"
    assert evaluation.eval_device(0, 0) == "cpu"
    assert evaluation.eval_device(0, 2) == "cpu"
    assert evaluation.eval_device(None, 2) == "cuda"
    assert evaluation.eval_device(1, 1) == "cuda"
    with pytest.raises(RuntimeError, match=r"eval\.gpus is 1 but this job sees 0 CUDA"):
        evaluation.eval_device(1, 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU path of a job without a GPU")
def test_without_a_gpu_evaluation_runs_on_the_cpu(models):
    assert evaluation.local_eval_device(None) == "cpu" and evaluation.local_eval_device(0) == "cpu"
    model, tokenizer = evaluation.load_variant("pytorch", models["gpt2"], device=evaluation.local_eval_device(None))
    assert evaluation.model_device(model).type == "cpu"
    assert evaluation.HerdLM(model, tokenizer).device.type == "cpu"
    ort, _ = evaluation.load_variant("onnx", models["gpt2-onnx"], device="cuda")  # ONNX stays on the CPU
    assert evaluation.model_device(ort).type == "cpu"


def test_length_batches_group_similar_lengths():
    assert evaluation.length_batches([3, 40, 5, 38, 4, 39], 2) == [[1, 5], [3, 2], [4, 0]]
    assert evaluation.length_batches([], 4) == []


def test_generate_batches_by_length_and_keeps_input_order(models, monkeypatch):
    """Prompts of mixed lengths are batched by length (the two long ones together: no batch pads a short
    prompt to a long one); each answer still lands at its prompt's position."""
    model, tokenizer = evaluation.load_variant("pytorch", models["gpt2"])
    prompts = [prompt("Hi."), prompt(" ".join(["Describe the water cycle in detail."] * 6)),
               prompt("Name a colour."), prompt(" ".join(["List the planets of the solar system."] * 5))]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    single = [evaluation.generate(model, tokenizer, [p], max_new_tokens=5)[0] for p in prompts]
    shapes, inputs, real_generate = [], [], model.generate

    def recording_generate(**kwargs):  # the real generate, its input noted
        shapes.append(tuple(kwargs["input_ids"].shape))
        inputs.append(kwargs["input_ids"][0].tolist())
        return real_generate(**kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    evaluation.generate(model, tokenizer, [student_prompt("Hi.")], max_new_tokens=5)
    # the prompt's tokens are exactly training's (herd.students.encode_causal): no added start token
    assert tokenizer.bos_token_id is not None and tokenizer("Hi.")["input_ids"][0] == tokenizer.bos_token_id
    trained = encode_causal(tokenizer, "Hi.", "", 10_000)
    assert inputs.pop() == trained["input_ids"][: trained["labels"].count(-100)]
    shapes.clear()
    batched = evaluation.generate(model, tokenizer, prompts, max_new_tokens=5, batch_size=2)
    assert batched == single
    assert len(set(single)) > 1  # the check can tell answers apart
    assert shapes == [(2, max(lengths)), (2, max(lengths[0], lengths[2]))]


def test_rule_eval_asks_for_the_gpus_of_eval_gpus(tmp_path):
    """eval.gpus is the eval jobs' resources gpu (sbatch --gpus under the SLURM profile); a dry run shows it."""
    import re

    from conftest import copy_project, snakemake

    project = copy_project(tmp_path)
    (project / "gpu.yaml").write_text("eval:\n  gpus: 1\n")
    proc = snakemake(project, "-n", "results/eval.csv", "--configfile", "config/tiny.yaml", "gpu.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = [b for b in proc.stdout.split("\nrule ") if b.startswith("eval:")]
    onnx = [b for b in blocks if "onnx" in b.split("output:")[1].split("\n")[0]]
    assert blocks and onnx and len(onnx) < len(blocks)
    for block in blocks:  # ONNX variants run on the CPU provider: they hold no GPU
        assert re.search(r"resources: .*\bgpu=0\b" if block in onnx else r"resources: .*\bgpu=1\b", block)

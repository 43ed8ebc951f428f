"""A saved student carries its prompt template and decoding: transformers' pipeline answers in the
trained format, in a fresh process, and the ONNX export keeps both files."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from herd import model_files
from herd.prompts import student_prompt
from herd.students import TrainConfig, train

ROWS = [
    {"instruction": "What is the capital of France?", "response": "Paris."},
    {"instruction": "Name a primary colour.", "response": "Red."},
]
MAX_NEW_TOKENS = 12
INSTRUCTION = "  What is the capital of France? "  # the template trims, as student_prompt does


def _student(base, out, encoder_decoder):
    """A really trained tiny student, prepared and saved the way the training job saves it."""
    cfg = TrainConfig(learning_rate=3e-3, epochs=1, batch_size=2, grad_accum=1, max_length=64,
                      warmup_ratio=0.0, weight_decay=0.0, max_steps=6, seed=0)
    train(base, ROWS * 3, ROWS, cfg, out)
    cls = AutoModelForSeq2SeqLM if encoder_decoder else AutoModelForCausalLM
    model, tok = cls.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    model_files.prepare(model, tok, encoder_decoder, MAX_NEW_TOKENS)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gpt2_student(tmp_path_factory, tiny_gpt2):
    return _student(tiny_gpt2, tmp_path_factory.mktemp("released") / "gpt2", False)


@pytest.fixture(scope="module")
def t5_student(tmp_path_factory, tiny_t5):
    return _student(tiny_t5, tmp_path_factory.mktemp("released") / "t5", True)


@pytest.mark.parametrize("instruction", ["Name three colours.", "  Say {hi} in 'quotes' \"too\".\n",
                                         "Line one.\nLine two."])
def test_chat_template_renders_the_student_prompt(tokenizer_dir, instruction):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = model_files.CHAT_TEMPLATE
    messages = [{"role": "user", "content": instruction}]
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == student_prompt(instruction)
    # tokenised as training tokenises the prompt: no special tokens added
    assert tok.apply_chat_template(messages, add_generation_prompt=True) == tok(
        student_prompt(instruction), add_special_tokens=False)["input_ids"]
    # an answered turn ends with the end token training appended
    done = tok.apply_chat_template([*messages, {"role": "assistant", "content": "Blue."}], tokenize=False)
    assert done == student_prompt(instruction) + "Blue." + tok.eos_token


def test_chat_template_refuses_a_system_prompt(tokenizer_dir):
    from jinja2.exceptions import TemplateError

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.chat_template = model_files.CHAT_TEMPLATE
    with pytest.raises(TemplateError, match="system"):
        tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                                tokenize=False)


# Run in a fresh interpreter: nothing but the saved folder tells transformers how to prompt and decode.
# The reference is greedy decoding of student_prompt's tokens as training saw them, MAX_NEW_TOKENS long.
FRESH = r"""
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
folder, task, instruction, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
messages = [{"role": "user", "content": instruction}]
pipe = pipeline(task, model=folder, device="cpu")
tok = pipe.tokenizer
prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
if task == "text-generation":
    out = pipe(messages)[0]["generated_text"]
    answer, roles = out[-1]["content"], [m["role"] for m in out]
    ref = AutoModelForCausalLM.from_pretrained(folder).generate(ids, attention_mask=torch.ones_like(ids),
        do_sample=False, max_new_tokens=limit, pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
else:
    answer, roles = pipe(prompt)[0]["generated_text"], None
    ids = tok(prompt, return_tensors="pt")["input_ids"]  # the text2text pipeline adds the tokenizer's specials
    ref = AutoModelForSeq2SeqLM.from_pretrained(folder).generate(ids, do_sample=False, max_new_tokens=limit)[0, 1:]
ref = ref.tolist()
print(json.dumps({"prompt": prompt, "answer": answer, "roles": roles, "eos": tok.eos_token_id,
                  "reference_ids": ref, "reference": tok.decode(ref, skip_special_tokens=True)}))
"""


def _fresh(folder, task):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run([sys.executable, "-c", FRESH, str(folder), task, INSTRUCTION, str(MAX_NEW_TOKENS)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_saved_decoder_answers_in_its_template_through_pipeline(gpt2_student):
    got = _fresh(gpt2_student, "text-generation")
    assert got["prompt"] == student_prompt(INSTRUCTION)
    assert got["roles"] == ["user", "assistant"]
    # greedy and bounded by the saved generation config: the pipeline's own default would sample
    # 256 tokens at temperature 0.7
    assert len(got["reference_ids"]) <= MAX_NEW_TOKENS
    assert got["answer"] == got["reference"]
    # the answer is the continuation after the template's response header, stopped at the end token
    # or at the saved limit
    assert got["reference_ids"][-1] == got["eos"] or len(got["reference_ids"]) == MAX_NEW_TOKENS


def test_saved_encoder_decoder_answers_in_its_template_through_pipeline(t5_student):
    got = _fresh(t5_student, "text2text-generation")
    assert got["prompt"] == student_prompt(INSTRUCTION)
    assert len(got["reference_ids"]) <= MAX_NEW_TOKENS
    assert got["answer"] == got["reference"]  # greedy (the text2text default is 4 beams), saved limit


@pytest.mark.parametrize("which", ["gpt2", "t5"])
def test_onnx_export_keeps_the_template_and_generation_config(tmp_path, which, gpt2_student, t5_student):
    from herd.export import export_onnx

    folder = {"gpt2": gpt2_student, "t5": t5_student}[which]
    out = tmp_path / "onnx"
    export_onnx(folder, out, which == "t5")
    assert model_files.missing(out) == []
    assert (out / "chat_template.jinja").read_text() == model_files.CHAT_TEMPLATE
    assert json.loads((out / "generation_config.json").read_text())["max_new_tokens"] == MAX_NEW_TOKENS
    task = "text2text-generation" if which == "t5" else "text-generation"
    assert json.loads((out / "config.json").read_text())["task_specific_params"][task]["num_beams"] == 1
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.apply_chat_template([{"role": "user", "content": "Hi."}], tokenize=False,
                                   add_generation_prompt=True) == student_prompt("Hi.")


def test_link_tree_links_and_copy_to_restores(tmp_path, gpt2_student):
    dst = tmp_path / "release" / "pytorch"
    n = model_files.link_tree(gpt2_student, dst)
    assert n == len([p for p in gpt2_student.iterdir() if p.is_file()])
    weights = next(gpt2_student.glob("*.safetensors"))
    assert (dst / weights.name).stat().st_ino == weights.stat().st_ino  # a link, not a copy
    bare = tmp_path / "bare"
    model_files.link_tree(gpt2_student, bare)
    (bare / "chat_template.jinja").unlink()
    (bare / "generation_config.json").unlink()
    assert model_files.missing(bare) == ["generation_config.json", "chat_template.jinja"]
    assert sorted(model_files.copy_to(gpt2_student, bare)) == ["chat_template.jinja", "generation_config.json"]
    assert model_files.missing(bare) == []

    # only the template missing: the generation config still linked into the source is replaced
    # by a file of its own, and the source keeps its content (no write through the hard link)
    partial, other = tmp_path / "partial", tmp_path / "other"
    model_files.link_tree(gpt2_student, partial)
    (partial / "chat_template.jinja").unlink()
    shutil.copytree(gpt2_student, other)
    (other / "generation_config.json").write_text('{"from": "elsewhere"}', encoding="utf-8")
    before = (gpt2_student / "generation_config.json").read_bytes()
    model_files.copy_to(other, partial)
    assert (gpt2_student / "generation_config.json").read_bytes() == before
    assert (partial / "generation_config.json").read_text(encoding="utf-8") == '{"from": "elsewhere"}'
    assert (partial / "generation_config.json").stat().st_ino != (gpt2_student / "generation_config.json").stat().st_ino


def test_release_files_follow_eval_variants():
    dirs = {"pytorch": "results/students/{student}/model", "onnx": "results/export/{student}/onnx",
            "onnx-int8": "results/export/{student}/onnx-int8", "base": "results/student_base/{student}"}
    files = model_files.release_files("s", ["base", "pytorch", "onnx-int8", "teacher"], dirs)
    assert files["pytorch"] == "results/students/s/model" and files["onnx-int8"] == "results/export/s/onnx-int8"
    assert "onnx" not in files and "base" not in files
    assert files["eval_onnx-int8"] == "results/eval/s/onnx-int8.csv" and files["parity"].endswith("parity.json")
    only = model_files.release_files("s", ["base"], dirs)
    assert "parity" not in only and "eval_pytorch" not in only and only["pytorch"] == "results/students/s/model"

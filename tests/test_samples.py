"""Sample answers: prompt files, greedy answers of a real trained tiny student, the side-by-side page."""
import json

import pytest

from herd import samples
from herd.students import TrainConfig, train

ROWS = [{"instruction": "Name a primary colour.", "response": "Red."},
        {"instruction": "Which animal barks?", "response": "A dog."}]


def test_read_prompts_text_and_jsonl(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\nFirst task.\n\n  Second task.  \n")
    assert samples.read_prompts(txt) == ["First task.", "Second task."]
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"instruction": "Sum these.", "input": "1, 2"}) + "\n\n" + json.dumps({"instruction": "Hi"}))
    assert samples.read_prompts(jl) == ["Sum these.\n1, 2", "Hi"]
    jl.write_text(json.dumps({"instruction": "ok"}) + "\n" + json.dumps({"text": "no"}) + "\n")
    with pytest.raises(ValueError, match=r"samples.prompts: .*p.jsonl:2: record 2: has no `instruction`"):
        samples.read_prompts(jl)
    with pytest.raises(FileNotFoundError, match="samples.prompts"):
        samples.read_prompts(tmp_path / "missing.txt")


def test_default_prompt_file_is_readable():
    assert len(samples.read_prompts("config/data/sample_prompts.txt")) == 6


def test_trained_student_answers_and_the_page_lists_them(tmp_path, tiny_gpt2):
    out = tmp_path / "student"
    train(tiny_gpt2, ROWS * 4, ROWS, TrainConfig(learning_rate=3e-3, epochs=1, batch_size=2, grad_accum=1,
                                                 max_length=64, warmup_ratio=0.0, weight_decay=0.0,
                                                 max_steps=4, seed=0), out)
    prompts = ["Name a primary colour.", "Which animal barks?"]
    rows = samples.answer_all("pytorch", out, prompts, max_new_tokens=5, threads=1)
    assert [r["instruction"] for r in rows] == prompts and [r["prompt"] for r in rows] == [0, 1]
    for r in rows:
        assert r["finish_reason"] in ("stop", "length") and 0 <= r["tokens"] <= 5 and r["seconds"] > 0
        assert (r["finish_reason"] == "length") == (r["tokens"] == 5)  # no end token: cut at the limit
    again = samples.answer_all("pytorch", out, prompts, max_new_tokens=5, threads=1)
    assert [r["answer"] for r in again] == [r["answer"] for r in rows]  # greedy: repeatable
    page = samples.table({("s", "pytorch"): rows, ("s", "base"): rows[:1]}, 5)
    assert "## 1. Name a primary colour." in page and "## 2. Which animal barks?" in page
    assert page.count("**s / pytorch**") == 2 and page.count("**s / base**") == 1
    assert page.index("**s / pytorch**") < page.index("**s / base**")

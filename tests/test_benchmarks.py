"""Local benchmark files -> lm-eval's schema and task configs (real data from ../shared)."""

from pathlib import Path

import pytest

from herd import benchmarks
from herd.io import read_jsonl

ROOT = Path(__file__).parents[2] / "shared/data/benchmarks"

needs_data = pytest.mark.skipif(not ROOT.is_dir(), reason=f"benchmark data not found at {ROOT}")


def converted(task: str) -> list[dict]:
    return benchmarks.TASKS[task].convert(benchmarks.local_files(task, ROOT))


@pytest.fixture(scope="module")
def manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=False)


def test_registry_has_the_required_tasks():
    assert {"arc_easy", "arc_challenge", "boolq", "piqa", "openbookqa", "sst2"} <= set(benchmarks.TASKS)


# ---------------------------------------------------------------- converters on known items


@needs_data
def test_arc_easy_fields_and_gold():
    recs = converted("arc_easy")
    assert len(recs) == 2376
    first = recs[0]
    assert set(first) == {"id", "question", "choices", "answerKey"}
    assert first["id"] == "Mercury_417466"
    assert first["question"].startswith("Which statement best explains why photosynthesis")
    assert first["choices"]["label"] == ["A", "B", "C", "D"]
    assert first["choices"]["text"][0] == "Sunlight is the source of energy for nearly all ecosystems."
    assert first["answerKey"] == "A"
    numeric = recs[14]  # NY Regents items are labelled 1-4
    assert numeric["id"] == "NYSEDREGENTS_2015_8_28"
    assert numeric["choices"]["label"] == ["1", "2", "3", "4"]
    assert numeric["choices"]["text"][numeric["choices"]["label"].index(numeric["answerKey"])] == "elements"
    assert len(recs[93]["choices"]["text"]) == 3  # some items have three choices


@needs_data
def test_boolq_labels_are_ints():
    recs = converted("boolq")
    assert len(recs) == 3270
    assert set(recs[0]) == {"question", "passage", "idx", "label"}
    assert recs[0]["question"] == "does ethanol take more energy make that produces"
    assert recs[0]["label"] == 0  # "false"
    assert recs[1]["question"] == "is house tax and property tax are same"
    assert recs[1]["label"] == 1  # "true"
    assert {r["label"] for r in recs} == {0, 1}


@needs_data
def test_piqa_joins_labels():
    recs = converted("piqa")
    assert len(recs) == 1838
    assert set(recs[0]) == {"goal", "sol1", "sol2", "label"}
    assert recs[0]["goal"] == "How do I ready a guinea pig cage for it's new occupants?"
    assert "ripped paper strips" in recs[0]["sol1"]
    assert [r["label"] for r in recs[:3]] == [0, 1, 1]  # dev-labels.lst starts 0, 1, 1


@needs_data
def test_openbookqa_parses_choices():
    recs = converted("openbookqa")
    assert len(recs) == 500
    first = recs[0]
    assert set(first) == {"id", "question_stem", "choices", "answerKey"}
    assert first["id"] == "8-343"
    assert first["choices"]["label"] == ["A", "B", "C", "D"]
    assert first["choices"]["text"] == [
        "make more phone calls",
        "quit eating lunch out",
        "buy less with monopoly money",
        "have lunch with friends",
    ]
    assert first["answerKey"] == "B"
    assert recs[1]["question_stem"] == "There is most likely going to be fog around:"
    assert recs[1]["choices"]["text"][0] == "a marsh" and recs[1]["answerKey"] == "A"


@needs_data
def test_sst2_glue_schema():
    recs = converted("sst2")
    assert len(recs) == 872
    assert recs[0] == {"sentence": "it 's a charming and often affecting journey . ", "label": 1, "idx": 0}
    assert recs[1]["sentence"] == "unflinchingly bleak and desperate " and recs[1]["label"] == 0


@needs_data
def test_rte_and_wic_labels():
    rte = converted("rte")
    assert len(rte) == 277
    assert rte[0]["sentence2"] == "Christopher Reeve had an accident."
    assert rte[0]["label"] == 1  # not_entailment; GLUE's rte uses 0 = entailment
    wic = converted("wic")
    assert len(wic) == 638
    assert wic[0]["label"] == 0 and wic[0]["word"] == "class"
    assert wic[0]["sentence1"][wic[0]["start1"] : wic[0]["end1"]] == "class"


# ---------------------------------------------------------------- prepare


@needs_data
def test_prepare_subset_is_deterministic(tmp_path):
    a = benchmarks.prepare("arc_easy", ROOT, tmp_path / "a", limit=20, seed=7)
    b = benchmarks.prepare("arc_easy", ROOT, tmp_path / "b", limit=20, seed=7)
    c = benchmarks.prepare("arc_easy", ROOT, tmp_path / "c", limit=20, seed=8)
    ids = [r["id"] for r in read_jsonl(a)]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert ids == [r["id"] for r in read_jsonl(b)]
    assert ids != [r["id"] for r in read_jsonl(c)]
    full = [r["id"] for r in converted("arc_easy")]
    assert ids == [i for i in full if i in set(ids)]  # a subset, in file order


@needs_data
def test_prepare_without_limit_keeps_everything(tmp_path):
    out = benchmarks.prepare("piqa", ROOT, tmp_path, limit=None, seed=0)
    assert out == tmp_path / "piqa.jsonl"
    assert len(read_jsonl(out)) == 1838


def test_prepare_returns_none_without_data(tmp_path):
    assert benchmarks.prepare("arc_easy", None, tmp_path, limit=5, seed=0) is None
    assert benchmarks.prepare("arc_easy", tmp_path / "nowhere", tmp_path, limit=5, seed=0) is None
    assert not list(tmp_path.glob("*.jsonl"))
    assert "ARC-Easy-Test.jsonl" in benchmarks.describe("arc_easy", tmp_path / "nowhere")


def test_unknown_task_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="no local data converter"):
        benchmarks.prepare("not_a_task", ROOT, tmp_path, limit=5, seed=0)


# ---------------------------------------------------------------- lm-eval configs


def test_task_config_points_lm_eval_at_the_local_file(tmp_path):
    path = tmp_path / "arc_easy.jsonl"
    cfg = benchmarks.task_config("arc_easy", path)
    assert cfg["task"] == "arc_easy"
    assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    assert cfg["dataset_kwargs"] == {"data_files": {"test": str(path.resolve())}}
    assert cfg["test_split"] == "test"
    assert cfg["validation_split"] is None and cfg["training_split"] is None
    # prompts, choices and metrics are lm-eval's own
    assert cfg["doc_to_text"] == "Question: {{question}}\nAnswer:"
    assert cfg["doc_to_choice"] == "{{choices.text}}"
    assert [m["metric"] for m in cfg["metric_list"]] == ["acc", "acc_norm"]
    boolq = benchmarks.task_config("boolq", tmp_path / "boolq.jsonl")
    assert boolq["validation_split"] == "validation" and boolq["test_split"] is None
    assert list(boolq["dataset_kwargs"]["data_files"]) == ["validation"]
    assert boolq["doc_to_choice"] == ["no", "yes"]


GOLD = {  # task -> (index of an item in the file, its gold answer text), checked by hand
    "arc_easy": (0, "Sunlight is the source of energy for nearly all ecosystems."),
    "boolq": (1, "yes"),
    "piqa": (1, "finish, woodgrain with  bobby pin "),
    "openbookqa": (0, "quit eating lunch out"),
    "sst2": (0, "positive"),
    "rte": (0, "False"),
    "wic": (0, "no"),
}


@needs_data
@pytest.mark.parametrize("task", sorted(benchmarks.TASKS))
def test_lm_eval_builds_the_task_offline(task, tmp_path, manager):
    """lm-eval loads the converted file and renders prompts and gold answers from it."""
    path = benchmarks.prepare(task, ROOT, tmp_path, limit=None, seed=0)
    lm_task = manager.load([benchmarks.task_config(task, path)])["tasks"][task]
    docs = list(lm_task.eval_docs)
    assert len(docs) == len(converted(task))
    for doc in docs[:20]:
        choices = lm_task.doc_to_choice(doc)
        assert len(choices) >= 2
        assert 0 <= lm_task.doc_to_target(doc) < len(choices)
        assert lm_task.doc_to_text(doc).strip()
    if task in GOLD:
        index, gold = GOLD[task]
        doc = docs[index]
        assert lm_task.doc_to_choice(doc)[lm_task.doc_to_target(doc)] == gold

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
    new = {"hellaswag", "wsc273", "mrpc", "social_iqa", "commonsense_qa", "multirc", "wsc", "copa", "cb"}
    assert new <= set(benchmarks.TASKS)


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


def gold_index(lm_task, doc) -> int:
    """The gold choice as lm-eval scores it: doc_to_text's index for multiple-input tasks
    (wsc273), else doc_to_target, an index or the text of a choice."""
    text = lm_task.doc_to_text(doc)
    if isinstance(text, int):
        return text
    target = lm_task.doc_to_target(doc)
    return target if isinstance(target, int) else lm_task.doc_to_choice(doc).index(target)


@pytest.fixture(scope="module")
def lm_docs(manager, tmp_path_factory):
    """task -> (lm-eval Task, its processed docs) built once from the converted files."""
    cache = {}

    def load(task):
        if task not in cache:
            path = benchmarks.prepare(task, ROOT, tmp_path_factory.mktemp(task), limit=None, seed=0)
            lm_task = manager.load([benchmarks.task_config(task, path)])["tasks"][task]
            cache[task] = (lm_task, list(lm_task.eval_docs))
        return cache[task]

    return load


GOLD = {  # task -> [(index of an item in the file, its gold answer text)], checked by hand
    "arc_easy": [(0, "Sunlight is the source of energy for nearly all ecosystems.")],
    "boolq": [(1, "yes")],
    "piqa": [(1, "finish, woodgrain with  bobby pin ")],
    "openbookqa": [(0, "quit eating lunch out")],
    "sst2": [(0, "positive")],
    "rte": [(0, "False")],
    "wic": [(0, "no")],
    # ending 3 of items 0 and 1 (gold index 3 in the file)
    "hellaswag": [(0, "starts pulling up roofing on a roof."), (1, "stands and lifts the weight over her head.")],
    # correctAnswer A, then B; lm-eval lowercases "The" inside the sentence
    "wsc273": [
        (0, "The city councilmen refused the demonstrators a permit because the city councilmen"),
        (1, "The city councilmen refused the demonstrators a permit because the demonstrators"),
    ],
    "mrpc": [(0, "yes"), (3, "no")],  # Quality 1, then the first Quality 0 row
    "social_iqa": [(0, "Find somewhere to go"), (1, "sympathetic"), (2, "get petitions signed")],  # labels 3, 1, 2
    "commonsense_qa": [(0, "A"), (2, "B")],
    "multirc": [  # lm-eval's choices put "yes" first and score label 1 (a correct answer) as "no"
        (0, "No\nIs the answer correct? yes"),
        (1, "Yes\nIs the answer correct? no"),
    ],
    "wsc": [(0, "no"), (1, "yes")],
    "copa": [(0, " water flowed from the spout."), (2, " she received her pension.")],  # label 1, then 0
    "cb": [(0, "False"), (1, "Neither"), (2, "True")],  # contradiction, neutral, entailment
}

COUNTS = {  # items per file (SOURCES.md; MultiRC: answers in its 83 passages)
    "arc_easy": 2376, "arc_challenge": 1172, "boolq": 3270, "piqa": 1838, "openbookqa": 500, "sst2": 872,
    "rte": 277, "wic": 638, "hellaswag": 10042, "wsc273": 273, "mrpc": 1725, "social_iqa": 1954,
    "commonsense_qa": 1221, "multirc": 4848, "wsc": 104, "copa": 100, "cb": 56,
}


def test_every_task_has_a_count_and_a_known_lm_eval_folder():
    assert set(COUNTS) == set(benchmarks.TASKS)
    for task, spec in benchmarks.TASKS.items():
        assert task in benchmarks._task_manager(spec.lm_eval_dir).task_index, (task, spec.lm_eval_dir)


@needs_data
@pytest.mark.parametrize("task", sorted(benchmarks.TASKS))
def test_lm_eval_builds_the_task_offline(task, lm_docs):
    """lm-eval loads the converted file and renders prompts and gold answers from it."""
    lm_task, docs = lm_docs(task)
    assert len(docs) == COUNTS[task]
    for doc in docs[:20]:
        choices = lm_task.doc_to_choice(doc)
        assert len(choices) >= 2
        assert 0 <= gold_index(lm_task, doc) < len(choices)
        assert str(lm_task.doc_to_text(doc)).strip()
    for index, gold in GOLD.get(task, []):
        doc = docs[index]
        assert lm_task.doc_to_choice(doc)[gold_index(lm_task, doc)] == gold


# ---------------------------------------------------------------- new converters: prompts on real items


@needs_data
def test_hellaswag_query_is_the_file_context(lm_docs):
    import bz2
    import re

    with bz2.open(ROOT / "hellaswag/hellaswag_val_full.txt.bz2", "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    contexts, endings = lines[0:-1:6], [lines[i + 2 : i + 6] for i in range(0, len(lines) - 1, 6)]
    lm_task, docs = lm_docs("hellaswag")
    assert len(contexts) == len(docs) == 10042
    assert lm_task.doc_to_text(docs[0]) == "Roof shingle removal: A man is sitting on a roof. he"
    assert lm_task.doc_to_target(docs[0]) == 3
    # lm-eval's preprocess deletes [bracketed] text (as it does on the Hub rows); two contexts have some
    differ = [i for i, doc in enumerate(docs) if lm_task.doc_to_text(doc) != contexts[i]]
    assert differ == [3505, 5592]
    assert "[www.kiddio.org]" in contexts[3505] and "[style a pixie cut | pixie cut]" in contexts[5592]
    # endings: the same, but where a closed [...] or a double space is cleaned up (12 items)
    differ = [i for i, doc in enumerate(docs) if lm_task.doc_to_choice(doc) != endings[i]]
    cleaned = [i for i, e in enumerate(endings) if any(re.search(r"\[.*?\]|  ", x) for x in e)]
    assert differ == cleaned and len(differ) == 12


@needs_data
def test_wsc273_schema_fields_and_continuation(lm_docs):
    recs = converted("wsc273")
    assert recs[2]["text"] == "The trophy doesn't fit into the brown suitcase because it is too large."
    assert recs[2]["pronoun"] == "it" and recs[2]["text"][recs[2]["pronoun_loc"] :].startswith("it is")
    assert recs[2]["options"] == ["The trophy", "the brown suitcase"] and recs[2]["label"] == 0  # "A."
    assert recs[3]["label"] == 1  # "B."
    lm_task, docs = lm_docs("wsc273")
    assert lm_task.doc_to_target(docs[2]) == " is too large."
    assert lm_task.doc_to_choice(docs[3])[lm_task.doc_to_text(docs[3])].endswith("because the brown suitcase")


@needs_data
def test_mrpc_prompt_and_labels(lm_docs):
    recs = converted("mrpc")
    assert sum(r["label"] for r in recs) == 1147  # paraphrase pairs in the MSR test split
    lm_task, docs = lm_docs("mrpc")
    assert lm_task.doc_to_text(docs[3]).startswith(
        "Sentence 1: A tropical storm rapidly developed in the Gulf of Mexico Sunday"
    )
    assert "\nQuestion: Do both sentences mean the same thing?\nAnswer:" in lm_task.doc_to_text(docs[3])
    assert not recs[0]["sentence1"].startswith("\ufeff")


@needs_data
def test_siqa_csqa_prompts(lm_docs):
    lm_task, docs = lm_docs("social_iqa")
    assert converted("social_iqa")[0]["label"] == "3"  # the dataset's own 1-based string
    assert lm_task.doc_to_text(docs[0]) == (
        "Q: Tracy didn't go home that evening and resisted Riley's attacks. What does Tracy need to do before this?\nA:"
    )
    lm_task, docs = lm_docs("commonsense_qa")
    text = lm_task.doc_to_text(docs[2])
    assert text.startswith("Question: Where would you find magazines along side many other printed works?\nA. doctor")
    assert "\nB. bookstore\n" in text and text.endswith("E. mortuary\nAnswer:")


@needs_data
def test_superglue_multirc_wsc_copa_cb(lm_docs):
    multirc = converted("multirc")
    assert multirc[2]["answer"] == "Less the mass, less the force applied" and multirc[2]["label"] == 1
    assert multirc[2]["idx"] == {"paragraph": 0, "question": 0, "answer": 2}
    assert multirc[-1]["idx"]["paragraph"] == 82  # 83 passages
    lm_task, docs = lm_docs("multirc")
    assert lm_task.doc_to_text(docs[0]).startswith("What causes a change in motion?")
    assert lm_task.doc_to_text(docs[0]).endswith(
        "\nQuestion: Would the mass of a baseball affect how much force you have to use to pick it up?\nAnswer:"
    )

    lm_task, docs = lm_docs("wsc")
    # wsc.fixed matches a span's case to the text ("The table" -> "the table")
    assert converted("wsc")[5]["span1_text"] == "the table"
    assert lm_task.doc_to_text(docs[5]) == (
        "Passage: The large ball crashed right through the table because *it* was made of styrofoam.\n"
        'Question: In the passage above, does the pronoun "*it*" refer to "*the table*"?\nAnswer:'
    )

    lm_task, docs = lm_docs("copa")
    assert lm_task.doc_to_text(docs[0]) == "The man turned on the faucet therefore"
    lm_task, docs = lm_docs("cb")
    assert lm_task.doc_to_text(docs[1]).endswith("Question: there is a shipment. True, False, or Neither?\nAnswer:")


# ---------------------------------------------------------------- data_source


def test_data_source_names_the_local_file_or_the_hub(tmp_path):
    assert benchmarks.data_source("sciq", ROOT) == "hub"  # no converter
    assert benchmarks.data_source("mrpc", None) == "hub"  # no root
    assert benchmarks.data_source("mrpc", tmp_path) == "hub"  # file missing: lm-eval's own dataset is tried


@needs_data
def test_data_source_of_local_tasks():
    assert benchmarks.data_source("arc_easy", ROOT) == "local ARC/ARC-e/ARC-Easy-Test.jsonl"
    mrpc = benchmarks.data_source("mrpc", ROOT)
    assert mrpc.startswith("local mrpc/msr_paraphrase_test.txt (")
    assert "MSR test split" in mrpc and "GLUE validation" in mrpc
    assert benchmarks.data_source("social_iqa", ROOT) == "local siqa/dev.jsonl"


# ---------------------------------------------------------------- config/paper.yaml


def test_paper_benchmarks_are_lm_eval_names():
    import yaml

    paper = yaml.safe_load((Path(__file__).parents[1] / "config/paper.yaml").read_text())["eval"]["benchmarks"]
    assert paper == ["openbookqa", "sciq", "race", "arc_challenge", "piqa", "record", "sst2", "mrpc", "rte",
                     "mnli", "mnli_mismatch", "wsc273", "winogrande", "wic", "hellaswag"]
    assert set(paper) <= benchmarks.known_tasks()
    # the nine with local files under benchmark_root (the paper.yaml comment names them)
    assert sorted(set(paper) & set(benchmarks.TASKS)) == [
        "arc_challenge", "hellaswag", "mrpc", "openbookqa", "piqa", "rte", "sst2", "wic", "wsc273"]

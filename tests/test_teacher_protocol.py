"""The one cache protocol (herd.teacher.base): every backend only generates what is missing;
`Teacher.answer` alone looks up, stores each answer as it arrives and counts.

`Scripted` below is a test backend for the protocol, like tests/fault_server.py is for the
HTTP client: it stands in for no model, it records what the protocol hands it."""
import pytest

from herd.teacher import Answer, Decoding, Request, ResponseCache, Teacher
from herd.teacher.huggingface import TransformersTeacher
from herd.teacher.llamacpp import LlamaCppTeacher
from herd.teacher.openai_batch import OpenAIBatchTeacher
from herd.teacher.openai_chat import OpenAITeacher
from herd.teacher.vllm_offline import VLLMTeacher

BACKENDS = [LlamaCppTeacher, TransformersTeacher, VLLMTeacher, OpenAITeacher, OpenAIBatchTeacher]
PROTOCOL = ("answer", "_answer_missing", "_store", "_count", "_leasing")


class Scripted(Teacher):
    backend = "scripted"

    def __init__(self, cache, die_after=None, fail=()):
        super().__init__("m", cache)
        self.asked: list[list[str]] = []  # the prompts of each _generate call
        self.die_after, self.fail = die_after, set(fail)

    def _generate(self, todo, done):
        self.asked.append([r.messages[0]["content"] for r in todo.values()])
        for n, (key, req) in enumerate(todo.items()):
            if n == self.die_after:
                raise KeyboardInterrupt("killed")  # as a job killed between two answers
            text = req.messages[0]["content"]
            done(key, Answer(None, error="boom") if text in self.fail else
                 Answer(text.upper(), finish_reason="stop", completion_tokens=len(text)))


def reqs(*texts):
    return [Request([{"role": "user", "content": t}], Decoding(), seed=0) for t in texts]


@pytest.fixture
def cache(tmp_path):
    return ResponseCache(tmp_path / "teacher.sqlite")


def test_backends_implement_only_generating():
    for cls in BACKENDS:
        assert "_generate" in cls.__dict__, cls
        assert not set(PROTOCOL) & set(cls.__dict__), f"{cls.__name__} overrides the cache protocol"


def test_cached_and_repeated_questions_are_never_asked_again(cache):
    first = Scripted(cache)
    assert [a.text for a in first.answer(reqs("a", "b"))] == ["A", "B"]
    again = Scripted(cache)
    answers = again.answer(reqs("b", "c", "a", "c"))
    assert again.asked == [["c"]]  # "a" and "b" come from the cache, "c" is asked once
    assert [a.text for a in answers] == ["B", "C", "A", "C"] and [a.cached for a in answers] == [True, False, True, True]
    assert again.stats | {"seconds": 0} == {"requests": 4, "cached": 3, "generated": 1, "failed": 0,
                                            "prompt_tokens": 0, "completion_tokens": 4, "seconds": 0}


def test_each_answer_is_stored_the_moment_it_arrives(cache):
    killed = Scripted(cache, die_after=2)
    with pytest.raises(KeyboardInterrupt):
        killed.answer(reqs("a", "b", "c", "d"))
    assert len(cache) == 2 and cache.holders() == {}  # two answers kept, no lease left behind
    rerun = Scripted(cache)
    assert [a.text for a in rerun.answer(reqs("a", "b", "c", "d"))] == ["A", "B", "C", "D"]
    assert rerun.asked == [["c", "d"]]


def test_a_failed_request_is_not_cached_and_is_asked_again(cache):
    teacher = Scripted(cache, fail={"b"})
    answers = teacher.answer(reqs("a", "b"))
    assert [a.ok for a in answers] == [True, False] and answers[1].error == "boom"
    assert teacher.stats["failed"] == 1 and len(cache) == 1 and cache.holders() == {}
    rerun = Scripted(cache)
    assert rerun.answer(reqs("a", "b"))[1].text == "B" and rerun.asked == [["b"]]


def test_many_failures_are_logged_a_few_then_counted(cache, caplog):
    texts = [f"q{i}" for i in range(25)]
    answers = Scripted(cache, fail=set(texts)).answer(reqs(*texts))
    assert not any(a.ok for a in answers) and cache.holders() == {}
    lines = [r.getMessage() for r in caplog.records if r.name == "herd.teacher.base"]
    assert len(lines) == 21 and lines[-1] == "... and 5 more failed teacher requests (25 in all)"

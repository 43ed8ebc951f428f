"""Prompts for the teacher, rendered and parsed by pure functions.

The recipe follows LaMini-LM: a generation prompt shows three seed examples,
each wrapped in <example> tags, optionally three topics the new instructions
must be about, and asks for a fixed number of new instructions (instructions
only, no answers). The wording is herd's own.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

# LaMini's labels (instruction_source) for the two kinds of generated instructions
SOURCE_LABEL = {
    "example": "self_instruct_without_topic",
    "topic": "self_instruct_with_topic",
}

GENERATION_SYSTEM = (
    "You write tasks for training a helpful AI assistant. "
    "You follow the requested output format exactly."
)

_GENERATION_HEAD = (
    "Below are {k} sample tasks that people asked an AI assistant to do.\n\n"
    "{examples}\n\n"
)

_TOPIC_LINE = (
    "Each new task must be about one of these topics: {topics}. "
    "Spread the tasks over all {n_topics} topics.\n\n"
)

_GENERATION_ASK = (
    "Write {n} new tasks. Do not copy or reword the samples: they only show the style. "
    "The new tasks must differ from the samples and from each other: "
    "vary the subject, the kind of task (question, explanation, rewriting, "
    "classification, brainstorming, advice, calculation, comparison) and the length. "
    "Each task is one self-contained instruction, phrased as an imperative sentence "
    "or a question, that can be answered with text alone. Write only the tasks, "
    "never their answers. Wrap every task in its own <example></example> tags."
)

RESPONSE_SYSTEM = (
    "You are a helpful assistant. Answer the user's request correctly and concisely: "
    "give the answer itself, without preamble or repetition of the question."
)


def format_seed(instruction: str, input_text: str = "") -> str:
    """A seed shown in a prompt: `instruction:input` when the seed has an input."""
    instruction = instruction.strip()
    input_text = (input_text or "").strip()
    return f"{instruction}:{input_text}" if input_text else instruction


def instructions_asked(examples: list[str], per_prompt: int, per_prompt_long: int,
                       long_example_words: int) -> int:
    """How many new instructions a prompt asks for: fewer next to long examples, whose
    answers are long too (LaMini asked for 20 with short seeds and 10 with P3/FLAN ones)."""
    longest = max((len(e.split()) for e in examples), default=0)
    return per_prompt_long if longest > long_example_words else per_prompt


def render_generation(examples: list[str], n: int, topics: list[str] | None = None) -> list[dict]:
    """Chat messages asking for `n` new instructions in the style of `examples`."""
    if not examples:
        raise ValueError("at least one seed example is needed")
    blocks = "\n".join(f"<example>{e}</example>" for e in examples)
    text = _GENERATION_HEAD.format(k=len(examples), examples=blocks)
    if topics:
        text += _TOPIC_LINE.format(topics=", ".join(topics), n_topics=len(topics))
    text += _GENERATION_ASK.format(n=n)
    return [
        {"role": "system", "content": GENERATION_SYSTEM},
        {"role": "user", "content": text},
    ]


def render_response(instruction: str, system_prompt: str = RESPONSE_SYSTEM) -> list[dict]:
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": instruction},
    ]


_OPEN = re.compile(r"<example>", re.IGNORECASE)
_CLOSE = re.compile(r"</example>", re.IGNORECASE)
_TAGGED = re.compile(r"<example>(.*?)</example>", re.IGNORECASE | re.DOTALL)
_LIST_MARK = re.compile(r"^\s*(?:(?:task|instruction|example)\s*)?(?:\d{1,3}\s*[.):\-]|[-*\u2022])\s*", re.IGNORECASE)
_ANSWER = re.compile(r"^\s*(?:answer|response|output|solution)\s*:", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:new\s+)?(?:task|instruction)\s*\d*\s*:\s*", re.IGNORECASE)


@dataclass
class ParseResult:
    instructions: list[str] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)


def _clean(fragment: str) -> str:
    text = _LIST_MARK.sub("", fragment.strip(), count=1)
    text = _LABEL.sub("", text, count=1)
    text = text.strip().strip('"').strip()
    return re.sub(r"\s+", " ", text)


def _split_list(fragment: str, rejected: Counter) -> list[str]:
    """A fragment holding a numbered or bulleted list is one instruction per item.

    Lines that give an answer ("Answer: ...") are not instructions and are dropped.
    """
    lines = [ln for ln in fragment.splitlines() if ln.strip()]
    kept = [ln for ln in lines if not _ANSWER.match(ln)]
    if len(kept) < len(lines):
        rejected["answer_line"] += len(lines) - len(kept)
    lines = kept
    items = [ln for ln in lines if _LIST_MARK.match(ln)]
    if len(items) < 2:
        return [" ".join(lines)] if lines else [""]
    if len(items) < len(lines):
        rejected["prose_line"] += len(lines) - len(items)
    return items


def parse_generation(text: str, finish_reason: str | None = None) -> ParseResult:
    """Split a teacher's answer into candidate instructions.

    Tagged answers are read tag by tag; an opening tag never closed (the answer
    ran out of tokens) is rejected as truncated, while closed tags are complete
    even in an answer that was cut. An answer without tags falls back to one
    instruction per numbered or bulleted line, and so does a tag that holds a
    whole list; when an untagged answer was cut (`finish_reason` "length") its
    last item may stop mid-sentence and is rejected as truncated. Every fragment
    that is not kept is counted under a reason.
    """
    result = ParseResult()
    if _OPEN.search(text):
        tagged = _TAGGED.findall(text)
        opened, closed = len(_OPEN.findall(text)), len(_CLOSE.findall(text))
        if opened > closed:
            result.rejected["truncated"] += opened - closed
        fragments = [item for frag in tagged for item in _split_list(frag, result.rejected)]
    else:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        fragments = [ln for ln in lines if _LIST_MARK.match(ln)]
        if len(fragments) < len(lines):
            result.rejected["prose_line"] += len(lines) - len(fragments)
        if finish_reason == "length" and fragments:
            # nothing marks where an untagged item ends: the last one of a cut answer may be cut
            fragments.pop()
            result.rejected["truncated"] += 1
    seen = set()
    for frag in fragments:
        inst = _clean(frag)
        if not inst:
            result.rejected["empty"] += 1
        elif re.search(r"</?\w+>", inst):
            result.rejected["markup"] += 1
        elif inst.lower() in seen:
            result.rejected["repeated_in_answer"] += 1
        else:
            seen.add(inst.lower())
            result.instructions.append(inst)
    return result


PROMPT_TEMPLATE = (
    "Below is a task. Write a response that completes it.\n\n"
    "### Task:\n{instruction}\n\n### Response:\n"
)


# The same prompt as a Jinja chat template, saved with every student's tokenizer so that
# tokenizer.apply_chat_template([{"role": "user", "content": x}], add_generation_prompt=True)
# == student_prompt(x), and transformers' text-generation pipeline answers in this format.
# The response header belongs to the user turn (as in training); an assistant turn is its
# text and the end token. Students were trained without a system prompt: one is refused.
_HEAD, _TAIL = PROMPT_TEMPLATE.split("{instruction}")
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{ " + repr(_HEAD) + " + (message['content'] | trim) + " + repr(_TAIL) + " }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ message['content'] + eos_token }}"
    "{%- else -%}"
    "{{ raise_exception('this model was trained on single user turns in herd\\'s instruction template; "
    "there is no ' + message['role'] + ' role') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def student_prompt(instruction: str) -> str:
    """The Alpaca-style prompt students are trained and evaluated with."""
    return PROMPT_TEMPLATE.format(instruction=instruction.strip())

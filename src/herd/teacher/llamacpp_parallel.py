"""Continuous batching for llama.cpp in process: several requests decoded at once.

On a CPU, decoding one sequence is bound by memory bandwidth: every new token
reads all the weights once. One `llama_decode` call over P sequences reads them
once for all P, so tokens per second grow with P until the cores are busy. Each
request keeps its own KV cells (a sequence id), sampler (temperature, then top-p,
then a draw seeded by the request's seed) and stop conditions; the slot of a
finished request is given to the next one at once, so the batch stays full.

The same requests with the same `parallel` give the same answers, run after run.
Across batch sizes they need not: llama.cpp's matrix products round differently
for different numbers of tokens in a batch, and a sampled token can flip on such
a difference (measured: 38 of 40 sampled answers of Qwen2.5-0.5B differ somewhere
between 1 and 8 in parallel, 23 of 40 between 8 and 32).

Sampling follows OpenAI's semantics (temperature before top-p; no top-k or
min-p), unlike `Llama.create_chat_completion`, whose defaults add top-k 40 and
min-p 0.05.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import llama_cpp as lc

from herd.teacher.request import Answer, Request

FLASH_ATTN = 0  # as llama-cpp-python's Llama: same numerics as its one-at-a-time API


class ParallelDecodeError(RuntimeError):
    pass


@dataclass
class _Slot:
    index: int  # position of the request in the caller's list
    seq: int  # llama.cpp sequence id (the slot number)
    prompt: list[int]
    max_tokens: int
    sampler: object
    fed: int = 0  # prompt tokens decoded so far
    next_token: int | None = None  # sampled, to be decoded in the next step
    out: list[int] = field(default_factory=list)
    batch_row: int = -1  # row of this slot's logits in the last batch

    @property
    def prefilling(self) -> bool:
        return self.fed < len(self.prompt)


def _sampler(temperature: float, top_p: float, seed: int):
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    if temperature <= 0:
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
    else:
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(temperature))
        if top_p < 1.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(top_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


class ParallelDecoder:
    """Decodes chat requests `parallel` at a time on the model of a loaded `llama_cpp.Llama`.

    `ctx_per_seq` tokens of context belong to each sequence (prompt and answer).
    """

    def __init__(self, llm, parallel: int, ctx_per_seq: int, threads: int, n_batch: int = 512):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if parallel < 1:
            raise ValueError("teacher.parallel must be at least 1")
        self.llm = llm
        self.parallel = parallel
        self.ctx_per_seq = ctx_per_seq
        self.n_batch = max(n_batch, parallel)
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ParallelDecodeError(f"{llm.model_path}: the GGUF file has no tokenizer.chat_template")
        eos = llm.token_eos()
        bos = llm.token_bos()
        self._format = Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        params = lc.llama_context_default_params()
        params.n_ctx = parallel * ctx_per_seq
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = parallel
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        params.flash_attn_type = FLASH_ATTN
        self._ctx = lc.llama_init_from_model(llm._model.model, params)
        if not self._ctx:
            raise ParallelDecodeError(f"llama.cpp could not create a context for {parallel} sequences "
                                      f"of {ctx_per_seq} tokens")
        self._mem = lc.llama_get_memory(self._ctx)
        self._vocab = lc.llama_model_get_vocab(llm._model.model)
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)

    def close(self) -> None:
        if self._ctx is not None:
            lc.llama_batch_free(self._batch)
            lc.llama_free(self._ctx)
            self._ctx = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def prompt_tokens(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        """The chat template applied and tokenized; and the template's stop strings."""
        result = self._format(messages=messages)
        tokens = self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, [s for s in stop if s]

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, Answer]]:
        """Yields (index into `requests`, answer) as each request finishes."""
        pending = deque(range(len(requests)))
        free = deque(range(self.parallel))
        active: dict[int, _Slot] = {}
        stops: dict[int, list[str]] = {}
        while pending or active:
            while pending and free:
                i = pending.popleft()
                req = requests[i]
                tokens, stop = self.prompt_tokens(req.messages)
                room = self.ctx_per_seq - len(tokens)
                if room < 1:
                    yield i, Answer(text=None, prompt_tokens=len(tokens),
                                    error=f"prompt of {len(tokens)} tokens does not fit the context of "
                                          f"{self.ctx_per_seq} tokens per sequence (teacher.n_ctx)")
                    continue
                d = req.decoding
                seq = free.popleft()
                active[seq] = _Slot(i, seq, tokens, min(d.max_tokens, room),
                                    _sampler(d.temperature, d.top_p, req.seed))
                stops[seq] = stop
            if not active:
                continue
            self._fill_batch(active)
            rc = lc.llama_decode(self._ctx, self._batch)
            if rc != 0:  # cannot happen with the sizes above; fail the requests in flight, loudly
                for slot in list(active.values()):
                    yield slot.index, self._finish(slot, None, error=f"llama_decode returned {rc}")
                    del active[slot.seq]
                    free.append(slot.seq)
                continue
            for slot in list(active.values()):
                if slot.prefilling or slot.batch_row < 0:
                    continue
                tok = lc.llama_sampler_sample(slot.sampler, self._ctx, slot.batch_row)
                reason = None
                if lc.llama_vocab_is_eog(self._vocab, tok):
                    reason = "stop"
                else:
                    slot.out.append(tok)
                    slot.next_token = tok
                    if stops[slot.seq] and self._hit_stop(slot, stops[slot.seq]):
                        reason = "stop"
                    elif len(slot.out) >= slot.max_tokens:
                        reason = "length"
                if reason:
                    yield slot.index, self._finish(slot, reason, stop=stops[slot.seq])
                    del active[slot.seq]
                    free.append(slot.seq)

    def _fill_batch(self, active: dict[int, _Slot]) -> None:
        b = self._batch
        n = 0

        def add(token: int, pos: int, seq: int, logits: bool) -> None:
            nonlocal n
            b.token[n] = token
            b.pos[n] = pos
            b.n_seq_id[n] = 1
            b.seq_id[n][0] = seq
            b.logits[n] = logits
            n += 1

        decoding = [s for s in active.values() if not s.prefilling]
        for slot in decoding:  # one new token each, first, so no sequence waits on a long prompt
            slot.batch_row = n
            add(slot.next_token, len(slot.prompt) + len(slot.out) - 1, slot.seq, True)
        for slot in active.values():
            if not slot.prefilling:
                continue
            take = min(len(slot.prompt) - slot.fed, self.n_batch - n)
            if take <= 0:
                slot.batch_row = -1
                continue
            for k in range(slot.fed, slot.fed + take):
                add(slot.prompt[k], k, slot.seq, k == len(slot.prompt) - 1)
            slot.fed += take
            slot.batch_row = n - 1 if not slot.prefilling else -1
        b.n_tokens = n

    def _hit_stop(self, slot: _Slot, stops: list[str]) -> bool:
        tail = self.llm.detokenize(slot.out[-16:]).decode("utf-8", errors="ignore")
        return any(s in tail for s in stops)

    def _finish(self, slot: _Slot, reason: str | None, stop: Sequence[str] = (), error: str | None = None) -> Answer:
        lc.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
        lc.llama_sampler_free(slot.sampler)
        if error:
            return Answer(text=None, prompt_tokens=len(slot.prompt), error=error)
        text = self.llm.detokenize(slot.out).decode("utf-8", errors="replace")
        for s in stop:
            if s in text:
                text = text[: text.index(s)]
        return Answer(text=text, finish_reason=reason, prompt_tokens=len(slot.prompt),
                      completion_tokens=len(slot.out))

"""lm-eval's `LM` interface over herd's models.

- `HerdLM` adapts any Hugging Face-style model whose forward returns `.logits`
  (transformers or optimum's ONNX Runtime classes, decoder-only or
  encoder-decoder); it scores (context, continuation) pairs, which is all
  zero-shot multiple-choice tasks need.
- `InstructionTemplateLM` wraps any lm-eval `LM` so that every request's
  context is rendered through the student's instruction prompt first (as
  LaMini's evaluation fork did); `prompt_style` names what an LM shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM, TemplateLM
from tqdm import tqdm

from herd.prompts import student_prompt

BATCH_SIZE = 8  # (context, continuation) pairs per forward pass
MAX_LENGTH_FALLBACK = 2048  # when neither config nor tokenizer gives a usable limit
PLAIN, INSTRUCTION_TEMPLATE = "plain", "instruction_template"  # the `prompt` column of eval rows


def is_encoder_decoder(model) -> bool:
    return bool(getattr(model.config, "is_encoder_decoder", False))


def _max_length(model, tokenizer) -> int:
    """Longest input the model takes: its position table, else the tokenizer's limit."""
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else MAX_LENGTH_FALLBACK


def model_device(model) -> torch.device:
    """Where a model's inputs must go: its parameters' device (ONNX Runtime models: the CPU)."""
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
    return torch.device("cpu")


def _right_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids, attention mask), padded on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


class ChoicesOnly:
    """lm-eval's other two request kinds, refused: herd's adapters score (context, continuation)
    pairs, which is what zero-shot multiple-choice tasks ask (herd.evaluation never sends them
    the others: such tasks get an `unsupported` row)."""

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(f"{type(self).__name__} scores multiple-choice tasks only; perplexity tasks "
                                  "(loglikelihood_rolling) are not supported")

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(f"{type(self).__name__} scores multiple-choice tasks only; generative lm-eval "
                                  "tasks (generate_until) are not supported")


class HerdLM(ChoicesOnly, TemplateLM):
    """lm-eval `LM` over a Hugging Face-style model (PyTorch or ONNX Runtime).

    Tokenisation follows lm-eval's `TemplateLM`: trailing whitespace of the
    context moves into the continuation; decoder-only models encode
    context+continuation together and score the continuation's tokens;
    encoder-decoder models encode the context and score the continuation as
    the decoder's target. Special tokens follow the tokenizer's defaults and an
    empty context becomes the BOS (else EOS) token, as in lm-eval's HFLM, so
    scores match `lm_eval --model hf` on the same checkpoint.
    """

    def __init__(self, model, tokenizer, batch_size: int = BATCH_SIZE):
        super().__init__()
        if isinstance(model, torch.nn.Module):
            model.eval()  # a model fresh from training would otherwise score with dropout
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.backend = "seq2seq" if is_encoder_decoder(model) else "causal"
        self.max_length = _max_length(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._device = model_device(model)  # LM.device; every input tensor is moved there

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        """The token an empty context becomes: BOS, else EOS (as lm-eval's HFLM)."""
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        """lm-eval's HFLM convention: the tokenizer's own default for special tokens
        (e.g. a BOS where the tokenizer adds one), but no second BOS."""
        if add_special_tokens is None:
            bos = self.tokenizer.bos_token
            add_special_tokens = not (bos and string.startswith(bos))
        return self.tokenizer.encode(string, add_special_tokens=add_special_tokens)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Score (key, context tokens, continuation tokens) requests in right-padded batches.

        Requests are sorted longest first, so padding stays small and a memory
        problem shows up in the first batch; results come back in input order.
        """
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        score = self._score_seq2seq if self.backend == "seq2seq" else self._score_causal
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="loglikelihood", unit="batch", disable=disable_tqdm):
            pairs = [(requests[i][1], requests[i][2]) for i in batch]
            with torch.inference_mode():
                for i, result in zip(batch, score(pairs)):
                    results[i] = result
        return results

    @staticmethod
    def _sum_and_greedy(logits: torch.Tensor, targets: list[int]) -> tuple[float, bool]:
        """Sum of the targets' log-probs under `logits` (one row per target), and whether argmax hits them all."""
        logprobs = F.log_softmax(logits.float(), dim=-1)
        target = torch.tensor(targets, dtype=torch.long, device=logprobs.device)
        total = logprobs.gather(-1, target[:, None]).sum().item()
        return total, bool((logprobs.argmax(-1) == target).all())

    def _score_causal(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        # Input is context+continuation minus its last token, left-truncated to the model's length;
        # the logits at the last len(continuation) input positions predict the continuation.
        inputs = [(ctx + cont)[-(self.max_length + 1) :][:-1] for ctx, cont in pairs]
        # one row per distinct input: the choices of one question with one-token answers (yes/no)
        # all read their log-prob from the same row, as lm-eval's HFLM does
        rows = {seq: r for r, seq in enumerate(dict.fromkeys(map(tuple, inputs)))}
        ids, mask = _right_pad([list(seq) for seq in rows], self.pad_id)
        feed = {"input_ids": ids.to(self._device)}
        # Right padding under causal attention: no real position sees a pad, so PyTorch models get no
        # mask and SDPA takes its causal fast path (as lm-eval's HFLM); ONNX graphs require the input
        if not isinstance(self.model, torch.nn.Module):
            feed["attention_mask"] = mask.to(self._device)
        logits = torch.as_tensor(self.model(**feed).logits)
        out = []
        for inp, (_, cont) in zip(inputs, pairs):
            end = len(inp)
            out.append(self._sum_and_greedy(logits[rows[tuple(inp)], end - len(cont) : end], cont))
        return out

    def _score_seq2seq(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        # The encoder reads the context; the decoder reads <start> + continuation[:-1] and predicts the continuation.
        start = self.model.config.decoder_start_token_id
        if start is None:
            start = self.pad_id
        enc_ids, enc_mask = _right_pad([ctx[-self.max_length :] for ctx, _ in pairs], self.pad_id)
        dec_ids, _ = _right_pad([[start] + cont[:-1] for _, cont in pairs], self.pad_id)
        logits = torch.as_tensor(
            self.model(input_ids=enc_ids.to(self._device), attention_mask=enc_mask.to(self._device),
                       decoder_input_ids=dec_ids.to(self._device)).logits
        )
        return [self._sum_and_greedy(logits[row, : len(cont)], cont) for row, (_, cont) in enumerate(pairs)]


class InstructionTemplateLM(LM):
    """Any lm-eval `LM`, with each request's context rendered through `prompt_fn` (the
    student's instruction prompt) before the wrapped LM scores it.

    LaMini's evaluation fork wrapped every benchmark prompt in the Alpaca-style
    template; plain lm-eval does not. Requests are copied with new arguments
    (context, continuation) or (context, generation kwargs), so lm-eval's own
    records keep the plain prompt. Perplexity requests (loglikelihood_rolling)
    have no context and pass through unchanged.
    """

    def __init__(self, lm: LM, prompt_fn: Callable[[str], str] = student_prompt):
        super().__init__()
        self.lm = lm
        self.prompt_fn = prompt_fn

    def _wrapped(self, requests) -> list:
        return [dataclasses.replace(r, arguments=(self.prompt_fn(r.args[0]), *r.args[1:]), resps=[],
                                    filtered_resps={}) for r in requests]

    def loglikelihood(self, requests, **kwargs):
        return self.lm.loglikelihood(self._wrapped(requests), **kwargs)

    def generate_until(self, requests, **kwargs):
        return self.lm.generate_until(self._wrapped(requests), **kwargs)

    def loglikelihood_rolling(self, requests, **kwargs):
        return self.lm.loglikelihood_rolling(requests, **kwargs)

    @property
    def rank(self) -> int:
        return self.lm.rank

    @property
    def world_size(self) -> int:
        return self.lm.world_size

    @property
    def device(self):
        return self.lm.device

    def __getattr__(self, name):  # anything else lm-eval asks for (tokenizer_name, batch sizes, ...)
        if name == "lm":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.lm, name)


def prompt_style(lm: LM) -> str:
    """The `prompt` column of rows scored with `lm`."""
    return INSTRUCTION_TEMPLATE if isinstance(lm, InstructionTemplateLM) else PLAIN

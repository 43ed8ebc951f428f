"""The `transformers` teacher: a Hugging Face model run with batched `generate`, for GPU nodes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from herd.teacher.base import Done, Teacher
from herd.teacher.cache import ResponseCache
from herd.teacher.request import Answer, Request, failed


class TransformersTeacher(Teacher):
    """A checkpoint directory, a Hub id, or a GGUF file. Requests are grouped by decoding
    settings; a batch samples with a seed derived from its requests' seeds."""

    backend = "transformers"

    def __init__(self, model_path: str, model_id: str, cache: ResponseCache, batch_size: int = 8):
        super().__init__(model_id, cache)
        self.model_path = str(model_path)
        self.batch_size = batch_size
        self._model = self._tok = None

    def _load(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path, kwargs = self.model_path, {}
            if path.endswith(".gguf"):
                path, kwargs = str(Path(path).parent), {"gguf_file": Path(path).name}
            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            self._tok = AutoTokenizer.from_pretrained(path, padding_side="left", **kwargs)
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token
            self._model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, **kwargs).to(device).eval()
        return self._model, self._tok

    def _generate_batch(self, reqs: list[Request]) -> list[Answer]:
        import torch

        model, tok = self._load()
        texts = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in reqs]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        d = reqs[0].decoding
        torch.manual_seed(hash(tuple(r.seed for r in reqs)) & 0x7FFFFFFF)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=d.max_tokens, do_sample=d.temperature > 0,
                                 temperature=d.temperature or None, top_p=d.top_p if d.temperature > 0 else None,
                                 pad_token_id=tok.pad_token_id)
        answers = []
        width = enc["input_ids"].shape[1]
        for i, row in enumerate(out[:, width:]):
            ids = [t for t in row.tolist() if t != tok.pad_token_id]
            ended = bool(ids) and ids[-1] == tok.eos_token_id or len(ids) < d.max_tokens
            answers.append(Answer(text=tok.decode(ids, skip_special_tokens=True),
                                  finish_reason="stop" if ended else "length",
                                  prompt_tokens=int(enc["attention_mask"][i].sum()), completion_tokens=len(ids)))
        return answers

    def _generate(self, todo: dict[str, Request], done: Done) -> None:
        order = {k: n for n, k in enumerate(todo)}
        keys = sorted(todo, key=lambda k: (tuple(asdict(todo[k].decoding).values()), order[k]))
        for start in range(0, len(keys), self.batch_size):
            by_decoding: dict = {}
            for key in keys[start : start + self.batch_size]:
                by_decoding.setdefault(todo[key].decoding, []).append(key)
            for group in by_decoding.values():
                try:
                    results = self._generate_batch([todo[k] for k in group])
                except Exception as exc:  # recorded, never turned into an empty answer
                    results = [failed(f"{type(exc).__name__}: {exc}") for _ in group]
                for key, ans in zip(group, results):
                    done(key, ans)

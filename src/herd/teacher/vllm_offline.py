"""The `vllm` teacher: vLLM in process, for GPU nodes (optional extra: `pip install vllm`)."""

from __future__ import annotations

from herd.teacher.base import Done, Teacher
from herd.teacher.cache import ResponseCache
from herd.teacher.request import Answer, Request


class VLLMTeacher(Teacher):
    """Requests go to `LLM.chat` `chunk` at a time (vLLM batches each chunk continuously); a
    chunk's answers are stored as it finishes, so a killed job loses at most one chunk. Each
    request keeps its own sampling seed."""

    backend = "vllm"
    chunk = 512

    def __init__(self, model_path: str, model_id: str, cache: ResponseCache):
        super().__init__(model_id, cache)
        self.model_path = str(model_path)
        self._llm = None

    def _generate(self, todo: dict[str, Request], done: Done) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise RuntimeError("teacher.backend vllm needs the optional package: pip install vllm") from exc
        if self._llm is None:
            self._llm = LLM(model=self.model_path)
        keys = list(todo)
        for c in range(0, len(keys), self.chunk):
            part = keys[c : c + self.chunk]
            params = [SamplingParams(temperature=todo[k].decoding.temperature, top_p=todo[k].decoding.top_p,
                                     max_tokens=todo[k].decoding.max_tokens, seed=todo[k].seed) for k in part]
            outputs = self._llm.chat([todo[k].messages for k in part], params, use_tqdm=True)
            for key, out in zip(part, outputs):
                gen = out.outputs[0]
                done(key, Answer(text=gen.text, finish_reason=gen.finish_reason,
                                 prompt_tokens=len(out.prompt_token_ids or []),
                                 completion_tokens=len(gen.token_ids)))

"""The Batch API's JSONL files: request lines in, result lines out (pure functions)."""

from __future__ import annotations

import json
import logging

from herd.teacher.http_errors import ERROR_BODY_CHARS
from herd.teacher.request import Answer, failed

log = logging.getLogger(__name__)

BATCH_ENDPOINT = "/v1/chat/completions"  # every input line's `url` and the batch's `endpoint`


def request_line(key: str, body: dict) -> bytes:
    """One input line: the chat request `body`, its cache key as ``custom_id``."""
    line = {"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def split_lines(lines: list[tuple[str, bytes]], max_requests: int, max_bytes: int) -> list[list[tuple[str, bytes]]]:
    """Cut (key, line) pairs, in order, into parts of at most `max_requests` lines and `max_bytes` bytes."""
    parts: list[list[tuple[str, bytes]]] = []
    size = 0
    for key, line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"one batch line is {len(line)} bytes, more than max_bytes_per_file={max_bytes}")
        if not parts or len(parts[-1]) >= max_requests or size + len(line) > max_bytes:
            parts.append([])
            size = 0
        parts[-1].append((key, line))
        size += len(line)
    return parts


def result_lines(text: str, file_id: str) -> list[dict]:
    """The JSON objects of a downloaded output or error file; a line that is not one is skipped
    (its request counts as unanswered)."""
    lines = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        try:
            line = json.loads(raw) if raw.strip() else None
        except ValueError:
            line = None
            log.warning("%s:%d: not valid JSON; that request counts as unanswered", file_id, lineno)
        if isinstance(line, dict):
            lines.append(line)
    return lines


def result_answer(line: dict, batch_id: str, redact) -> Answer:
    """One output or error line as an Answer; an error Answer for anything but a usable completion."""
    def bad(detail: str) -> Answer:
        return failed("batch: " + redact(detail)[:ERROR_BODY_CHARS])

    response = line.get("response")
    response = response if isinstance(response, dict) else {}
    body = response.get("body")
    if error := line.get("error"):
        if isinstance(error, dict):
            return bad(f"{error.get('code')}: {error.get('message')}")
        return bad(str(error))
    if not isinstance(body, dict) or response.get("status_code") != 200:
        message = body.get("error") if isinstance(body, dict) else body
        if isinstance(message, dict):
            message = message.get("message")
        return bad(f"HTTP {response.get('status_code')}: {message}")
    try:
        choice = body["choices"][0]
        text, finish = choice["message"]["content"], choice.get("finish_reason")
        usage = body.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        return bad(f"malformed result ({type(exc).__name__}: {exc})")
    if not isinstance(text, str):
        return bad(f"the answer holds no text (finish_reason={finish})")
    return Answer(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                  completion_tokens=completion_tokens, extra={"model": body.get("model"), "batch_id": batch_id})

"""Atomic writes give files the mode the umask asks for (a shared results folder stays readable)."""
import os
import stat

import pytest

from herd import io


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                        (0o077, 0o600, 0o700)])
def test_atomic_outputs_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    io.write_text(tmp_path / "a.txt", "x")
    io.write_json(tmp_path / "b.json", {"a": 1})
    io.write_jsonl(tmp_path / "c.jsonl", [{"a": 1}])
    with io.atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"0")
    for name in ("a.txt", "b.json", "c.jsonl"):
        assert mode(tmp_path / name) == file_mode, name
    assert mode(tmp_path / "model") == dir_mode
    assert mode(tmp_path / "model" / "weights.bin") == file_mode

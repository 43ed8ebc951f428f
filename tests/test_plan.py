"""The plan: teacher requests for seed rows, and the students' GPU-hours (pure arithmetic)."""
from pathlib import Path

import pytest
import yaml

from herd.compute import gpu_hours, training_flops
from herd.config import validate
from herd.plan import STUDENT_TEMPLATE_TOKENS, format_plan, plan_from_config, training_plan

ROOT = Path(__file__).resolve().parents[1]


def test_training_flops_is_6nt_for_decoders_and_3nt_for_encoder_decoders():
    assert training_flops(1e9, 1e10) == 6e19
    assert training_flops(1e9, 1e10, encoder_decoder=True) == 3e19


def test_gpu_hours_divide_flops_by_sustained_throughput():
    # 312 TFLOP/s at 50% MFU sustains 1.56e14 FLOP/s: 5.616e17 FLOPs take one hour
    assert gpu_hours(5.616e17, peak_tflops=312, mfu=0.5) == pytest.approx(1.0)
    assert gpu_hours(5.616e17, peak_tflops=312, mfu=0.25) == pytest.approx(2.0)


def test_training_plan_per_student():
    students = [
        {"name": "dec", "from": {"hub": "gpt2"}, "parameters": 1e8, "gpus": 2, "epochs": 2,
         "max_length": 512, "batch_size": 8, "grad_accum": 1},
        {"name": "short", "from": {"hub": "t5-small"}, "parameters": 1e8, "encoder_decoder": True, "gpus": 1,
         "epochs": 1, "max_length": 100, "batch_size": 8, "grad_accum": 1},
        {"name": "steps", "from": {"hub": "gpt2"}, "parameters": 1e8, "epochs": 5, "max_steps": 10,
         "max_length": 512, "batch_size": 8, "grad_accum": 4},
        {"name": "steps-dp", "from": {"hub": "gpt2"}, "parameters": 1e8, "epochs": 5, "max_steps": 10, "gpus": 4,
         "max_length": 512, "batch_size": 8, "grad_accum": 4},
        {"name": "unknown", "from": {"hub": "x"}, "epochs": 1, "max_length": 512, "batch_size": 8, "grad_accum": 1},
    ]
    tp = training_plan(students, train_rows=1000, row_tokens=200, plan_cfg={"gpu_peak_tflops": 100, "gpu_mfu": 0.5})
    dec, short, steps, unknown = (tp["students"][n] for n in ("dec", "short", "steps", "unknown"))
    assert dec["tokens"] == 1000 * 2 * 200
    assert dec["flops"] == 6 * 1e8 * 400_000
    assert dec["gpu_hours"] == pytest.approx(round(6 * 1e8 * 400_000 / (100e12 * 0.5) / 3600, 2))
    assert dec["wall_hours"] == pytest.approx(dec["gpu_hours"] / 2, abs=0.01)
    assert short["tokens_per_row"] == 100 and short["flops"] == 3 * 1e8 * 1000 * 100  # cut at max_length
    assert steps["tokens"] == 10 * 8 * 4 * 200  # max_steps x batch x accumulation rows
    assert tp["students"]["steps-dp"]["tokens"] == 4 * steps["tokens"]  # x 4 data-parallel GPUs
    assert unknown["gpu_hours"] is None and unknown["tokens"] == 200_000
    assert tp["total_gpu_hours"] == pytest.approx(sum(s["gpu_hours"] or 0 for s in tp["students"].values()), abs=0.02)


def test_plan_counts_seed_rows_without_downloading_hub_datasets(tmp_path):
    seeds = tmp_path / "alpaca.json"
    seeds.write_text('[{"instruction": "Add two and three.", "input": "", "output": "5"}]')
    cfg = validate({
        "seed_tasks": [
            {"path": str(ROOT / "config/data/seed_tasks.jsonl")},
            {"path": str(seeds), "format": "alpaca", "use": "reanswer", "source": "local"},
            # a Hub name that does not exist: the plan must not try to load it
            {"path": "no-such-org/no-such-dataset", "format": "hf", "use": "reanswer", "limit": 1000, "source": "hub"},
            {"path": "no-such-org/other", "format": "hf", "use": "passthrough", "source": "big"},
        ],
        "teacher": {"backend": "openai", "model": "gpt-3.5-turbo"},
        "instructions": {"per_prompt": 10, "example_guided": {"prompts": 10}, "topic_guided": {"prompts": 0}},
        "plan": {"keep_fraction": 0.5, "remote_seed_words": 50},
        "students": [{"name": "s", "from": {"hub": "gpt2"}, "parameters": 1.0e+8, "gpus": 1, "epochs": 1}],
    })
    est = plan_from_config(cfg)
    assert est["dataset"] == {"rows": 50 + 1 + 1000, "generated_kept": 50, "reanswer": 1001, "passthrough": 0,
                              "uncounted": ["big"]}
    assert est["stages"]["responses"]["requests"] == 1051
    row = est["training"]["students"]["s"]
    assert row["train_rows"] == int(1051 * 0.9)
    assert row["tokens_per_row"] > STUDENT_TEMPLATE_TOKENS + 0.6 * cfg["responses"]["decoding"]["max_tokens"]
    text = format_plan(est)
    assert "GPU-hours" in text and "not counted (Hub datasets without limit): big" in text


def test_paper_plan_reaches_the_paper_scale():
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    from snakemake.utils import update_config

    update_config(cfg, yaml.safe_load((ROOT / "config/paper.yaml").read_text()))
    if not Path(cfg["seed_tasks"][0]["path"]).is_absolute():
        cfg["seed_tasks"][0]["path"] = str(ROOT / cfg["seed_tasks"][0]["path"])
    if not Path(cfg["seed_tasks"][0]["path"]).exists():
        pytest.skip("../shared/data not present")
    est = plan_from_config(validate(cfg))
    assert 2.55e6 <= est["dataset"]["rows"] <= 2.62e6  # the paper's 2.58M
    assert est["total"]["usd"] < cfg["teacher"]["max_budget_usd"]
    assert len(est["training"]["students"]) == 15
    assert all(s["gpu_hours"] > 0 for s in est["training"]["students"].values())

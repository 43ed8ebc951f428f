"""The run report: figures from each stage's files, the dataset card's Hub metadata, and
`snakemake --report` on the tiny run, opened in headless Chromium as a person would."""
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import SHARED, snakemake

from herd import dataset, report_figures, report_html

REPORT_CMD = ["report", "--report", "results/report.html", "--report-after-run"]  # README.md, "Report"
SECTIONS = ["1. Plan and cost", "2. Data", "3. Diversity", "4. Training", "5. Export", "6. Evaluation"]


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_card_front_matter_names_every_licence_and_the_teacher():
    entries = [{"index": 0, "path": "s.jsonl", "format": "selfinstruct", "use": "examples",
                "source": "self_instruct_seed", "licence": "Apache-2.0"},
               {"index": 1, "path": "a.json", "format": "alpaca", "use": "reanswer", "source": "alpaca",
                "licence": "CC BY-NC 4.0"},
               {"index": 2, "path": "b.json", "format": "alpaca", "use": "passthrough", "source": "house",
                "licence": "Our Own Terms"}]
    rows = [{"id": "example-00000-00", "instruction": "Name a bird.", "response": "Robin.",
             "instruction_source": "self_instruct_without_topic"},
            {"id": "seed-alpaca-1-0", "instruction": "name a  BIRD.", "response": "Owl.",
             "instruction_source": "alpaca"},
            {"id": "seed-house-2-0", "instruction": "Add 2 and 2.", "response": "4",
             "instruction_source": "house"}]
    report = {"dropped": {"truncated_response": 3}, "failed_requests": [], "truncated_examples": [],
              "truncated_kept": 0, "generation": {"prompts": 2, "cut_answers": 1}}
    stats = {"input": 10, "kept": 6, "dropped": 4, "dropped_by_reason": {"rouge_similar": 3, "exact_duplicate": 1}}
    text = dataset.card(rows[:2], rows[2:], report, {"teacher": "qwen", "backend": "llamacpp",
                                                     "teacher_sha256": "ab12"}, stats, entries)
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == ["apache-2.0", "cc-by-nc-4.0", "other"]
    assert meta["license_name"] == "Our Own Terms"
    assert meta["licences"] == {"Apache-2.0": 1, "CC BY-NC 4.0": 1, "Our Own Terms": 1}
    assert meta["language"] == ["en"] and meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["source_datasets"] == ["original", "alpaca", "house", "self_instruct_seed"]
    assert meta["teacher"] == {"teacher": "qwen", "backend": "llamacpp", "teacher_sha256": "ab12"}
    quality = text.split("## Data quality")[1].split("\n## ")[0]
    assert "| instruction filters | rouge_similar | 3 |" in quality and "| assembly | truncated_response | 3 |" in quality
    assert "near duplicates among generated instructions (dropped) | 30.0% |" in quality
    assert "exact duplicate instructions in the dataset | 33.3% |" in quality  # "name a  BIRD." repeats
    # the licence line another reader (the model card) relies on is still there
    assert "**Licences that apply to the rows: Apache-2.0 (1 rows), CC BY-NC 4.0 (1 rows), Our Own Terms (1 rows)" \
        in text
    # and the report renders the card: front matter as a block, tables as tables
    page = report_html.markdown(text)
    assert "<pre>license:" in page and page.count("<table>") >= 5 and "<h2>Data quality</h2>" in page


def test_plan_against_ledgers_and_figures(tmp_path):
    plan = {"stages": {"instructions": {"requests": 2, "prompt_tokens": 100, "completion_tokens": 300, "usd": 0.5},
                       "responses": {"requests": 10, "prompt_tokens": 500, "completion_tokens": 500, "usd": 1.0}},
            "total": {"usd": 1.5},
            "training": {"students": {"s": {"tokens": 2000, "gpu_hours": 0.1}}}}
    ledger = [{"stage": "instructions", "prompt_tokens": 60, "completion_tokens": 140, "cached": False, "usd": 0.25},
              {"stage": "instructions", "prompt_tokens": 60, "completion_tokens": 140, "cached": True, "usd": 0.0},
              {"stage": "judge", "prompt_tokens": 5, "completion_tokens": 5, "cached": False, "usd": 0.01}]
    spent = report_figures.spent_by_stage(ledger)
    assert spent["instructions"] == {"requests": 2, "cached": 1, "prompt_tokens": 120, "completion_tokens": 280,
                                     "usd": 0.25}
    rows = report_figures.cost_rows(plan, spent, {"s": {"tokens": 1500, "seconds": 3.0}})
    assert [(r["what"], r["planned"], r["spent"]) for r in rows] == [
        ("teacher: instructions", 400, 400), ("teacher: responses", 1000, None), ("teacher: judge", None, 10),
        ("student: s", 2000, 1500)]
    report_figures.plan_cost_figure(rows, tmp_path / "plan.png", (1.5, 0.26))
    width, height = _png_size(tmp_path / "plan.png")
    assert width > 600 and height > 200


def test_training_and_export_figures_read_new_keys_when_present(tmp_path):
    metrics = {"a": {"train_loss": [2.0, 1.5, 1.2], "steps": 3, "val_loss_before": 2.1, "val_loss_after": 1.3,
                     "tokens_per_second": 50.0, "mfu": None},
               "b": {"train_loss": [3.0, 2.0], "steps": 2, "val_loss": [{"step": 0, "loss": 3.1}, {"step": 2, "loss": 2.2}],
                     "tokens_per_second": 80.0, "useful_tokens_per_second": 60.0, "mfu": 0.25}}
    assert report_figures._val_history(metrics["a"]) == ([0, 3], [2.1, 1.3])
    assert report_figures._val_history(metrics["b"]) == ([0, 2], [3.1, 2.2])
    assert report_figures._speed(metrics["b"]) == "80 tok/s, 60 useful tok/s, MFU 25.0%"
    report_figures.training_figure(metrics, tmp_path / "training.png")
    parity = {"a": {"size_mb": {"pytorch": 500.0, "onnx": 501.0, "int8": 140.0},
                    "fp32": {"max_abs_diff": 1e-4, "top1_agreement": 1.0, "passed": True},
                    "int8": {"max_abs_diff": 9.0, "top1_agreement": 0.4},
                    "flavours": {"int8-weights": {"top1_agreement": 0.96, "generation_match": 1.0, "size_mb": 230.0,
                                                  "passed": True}},
                    "chosen": "int8-weights", "gate": {"passed": True, "reasons": ["top-1 0.96 >= 0.9"]}}}
    rows = report_figures.export_rows(parity)
    assert [r["flavour"] for r in rows] == ["pytorch", "onnx-fp32", "onnx-int8", "int8-weights", "int8 gate"]
    assert rows[3]["note"] == "chosen" and rows[4]["note"] == "top-1 0.96 >= 0.9"
    report_figures.export_figure(rows, tmp_path / "export.png")
    assert _png_size(tmp_path / "training.png")[0] > 800 and _png_size(tmp_path / "export.png")[0] > 800


def _require_chromium():
    from cdp import find_chromium

    chromium = find_chromium()
    if chromium:
        return chromium
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("HERD_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium is not installed, but CI / HERD_REQUIRE_CHROMIUM=1 requires the browser check "
                    "(.ci/run installs Debian's chromium package)")
    pytest.skip("chromium not installed: `apt-get install -y chromium` to check the report in a browser")


def check_report_in_browser(report: Path, chromium: str, screenshot: Path) -> dict:
    """Open the report; show the evaluation table and a figure as a reader's clicks would; return what rendered."""
    from cdp import Browser

    browser = Browser(chromium)
    try:
        browser.goto(report.resolve().as_uri())
        browser.wait_for("typeof app !== 'undefined' && document.querySelector('#app').children.length > 0")
        shown = {"categories": browser.evaluate("Object.keys(categories)")}
        table = browser.evaluate("Object.keys(results).find(p => p.endsWith('eval_summary.html'))")
        browser.evaluate(f"app.showCategory('6. Evaluation'); app.setView({{content: 'html', "
                         f"contentPath: results['{table}'].data_uri, resultPath: '{table}'}})")
        browser.wait_for("document.querySelector('iframe') !== null")
        ctx = browser.frame_context("data:text/html")
        shown["table_rows"] = browser.wait_for(
            "document.readyState === 'complete' && document.querySelectorAll('table tbody tr').length",
            contextId=ctx)
        shown["table_text"] = browser.evaluate("document.querySelector('table').innerText", contextId=ctx)
        figure = browser.evaluate("Object.keys(results).find(p => p.endsWith('eval_tasks.png'))")
        browser.evaluate(f"app.setView({{content: 'img', contentPath: results['{figure}'].data_uri, "
                         f"resultPath: '{figure}'}})")
        shown["figure_width"] = browser.wait_for(
            "(() => { const i = document.querySelector('img[src^=\"data:image/png\"]');"
            " return i && i.complete ? i.naturalWidth : 0 })()")
        browser.screenshot(screenshot)
        shown["errors"] = list(browser.errors)
        return shown
    finally:
        browser.close()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not present")
def test_report_of_the_tiny_run_in_a_browser(tiny_run, tmp_path):
    chromium = _require_chromium()
    proc = snakemake(tiny_run, *REPORT_CMD, "--configfile", "config/tiny.yaml")
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = tiny_run / "results/report.html"
    text = report.read_text()
    # every section is in the page's data, with its figures
    categories = json.loads(re.search(r"var categories = (\{.*?\});", text).group(1))
    assert set(SECTIONS) <= set(categories), categories.keys()
    assert "7. Samples" in categories
    # the released folders' cards carry the run's eval rows and, for int8, the export's parity
    for student in ("smollm2-135m", "t5-tiny"):
        card = (tiny_run / f"results/models/{student}/onnx-int8/README.md").read_text()
        assert "## Export" in card and "| arc_easy |" in card and "did not evaluate" not in card, card[:2000]
        assert "## Evaluation" in (tiny_run / f"results/models/{student}/pytorch/README.md").read_text()
    for name in ["plan_cost.png", "filter_drops.png", "dataset_card.html", "map.png", "training.png", "export.png",
                 "eval_summary.html", "eval_tasks.png", "eval_vs_parameters.png", "judge_grades.png"]:
        assert f"results/report/{name}" in text or f"results/diversity/{name}" in text, name
    shot = tmp_path / "report.png"
    shown = check_report_in_browser(report, chromium, shot)
    assert shown["errors"] == [], shown["errors"]
    assert set(SECTIONS) <= set(shown["categories"])
    assert shown["table_rows"] >= 8 and "smollm2-135m" in shown["table_text"] and "average" in shown["table_text"]
    assert shown["figure_width"] > 500
    assert _png_size(shot)[0] == 1400
    print(f"report screenshot: {shot}")


def test_markdown_takes_a_hash_line_that_is_no_heading_as_text():
    """A sample answer or instruction line such as `#include <stdio.h>` once stopped the renderer."""
    from herd.report_html import markdown

    html = markdown("Fix this code.\n#include <stdio.h>\n\n####### seven\n\n# Head\n")
    assert "<h1>Head</h1>" in html and "#include" in html and "seven" in html

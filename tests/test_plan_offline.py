"""The bill before the key: planning and dry runs need no API key and no network; a server on
this machine is free; budget and price messages say what is true and how to fix it."""
import math
import re

import pytest
from conftest import ROOT, SHARED, copy_project, snakemake

from herd.config import load
from herd.cost import FREE, is_local_url, price, usd_pair, usd_text
from herd.plan import check_budget, plan_from_config

PAPER = ("--configfile", "config/paper.yaml")


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# ---------------------------------------------------------------- no key: the plan and the dry run

@pytest.fixture(scope="module")
def paper_project(tmp_path_factory):
    if not SHARED.exists():
        pytest.skip("../shared/data not present (Self-Instruct seeds)")
    return copy_project(tmp_path_factory.mktemp("paper-nokey"))


def test_paper_dry_run_without_key(paper_project, no_key):
    proc = snakemake(paper_project, "-n", "results/eval.csv", *PAPER)  # HF_HUB_OFFLINE=1 (conftest)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"teacher\.api_key_env: the environment variable OPENAI_API_KEY is not set", proc.stderr)
    assert "gpt-3.5-turbo (batch API)" in proc.stderr  # the bill is printed all the same
    assert int(dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.MULTILINE))["responses"]) == 1000


def test_paper_plan_target_without_key(paper_project, no_key):
    proc = snakemake(paper_project, "results/plan/plan.txt", *PAPER)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (paper_project / "results/plan/plan.txt").read_text()
    assert "gpt-3.5-turbo" in text and re.search(r"dataset: 2,5\d\d,\d{3} rows", text)


# ---------------------------------------------------------------- prices: local servers and unknown models

def openai_teacher(**kw):
    cfg = load(ROOT / "config.yaml")
    cfg["teacher"].update(backend="openai", **kw)
    return cfg


@pytest.mark.parametrize("url", ["http://localhost:8080/v1", "http://127.0.0.1:8000/v1", "http://127.1.2.3/v1",
                                 "http://[::1]:11434/v1", "http://0.0.0.0:8000/v1", "http://llm.localhost/v1"])
def test_a_server_on_this_machine_is_free(url):
    assert is_local_url(url)
    cfg = openai_teacher(base_url=url, model="my-local-model")  # no price entry
    assert price(cfg["teacher"]) == FREE
    check_budget(plan_from_config(cfg))


@pytest.mark.parametrize("url", ["https://api.openai.com/v1", "http://10.0.0.5:8000/v1", "http://localhost.evil.com/v1",
                                 "http://128.0.0.1/v1"])
def test_a_remote_server_is_not_local(url):
    assert not is_local_url(url)


def test_a_priced_model_behind_a_local_proxy_keeps_its_price():
    cfg = openai_teacher(base_url="http://127.0.0.1:4000/v1", model="gpt-4o-mini")
    assert price(cfg["teacher"]) == cfg["teacher"]["prices"]["gpt-4o-mini"]


def test_a_zero_price_entry_is_free():
    cfg = openai_teacher(base_url="https://llm.example.org/v1", model="house-model")
    cfg["teacher"]["prices"]["house-model"] = {"prompt": 0, "completion": 0}
    assert price(cfg["teacher"]) == FREE


def test_unknown_remote_model_is_refused_saying_how_to_price_it():
    cfg = openai_teacher(base_url="https://llm.example.org/v1", model="house-model")
    assert math.isnan(price(cfg["teacher"])["prompt"])
    with pytest.raises(ValueError) as err:
        check_budget(plan_from_config(cfg))
    msg = str(err.value)
    assert "teacher.prices" in msg and "house-model: {prompt:" in msg and "localhost" in msg


def test_budget_message_has_enough_digits():
    cfg = openai_teacher(model="gpt-4o-mini", max_budget_usd=0)
    cfg["instructions"]["example_guided"]["prompts"], cfg["instructions"]["topic_guided"]["prompts"] = 1, 0
    cfg["judge"]["instructions"] = None  # only that prompt: the judge (config.yaml grades 10 items) is off
    est = plan_from_config(cfg)
    assert 0 < est["total"]["usd"] < 0.005  # one prompt and its answers: less than half a cent
    with pytest.raises(ValueError) as err:
        check_budget(est)
    shown = re.search(r"cost \$([\d.,]+) exceeds teacher.max_budget_usd \$([\d.,]+)", str(err.value))
    assert float(shown.group(1)) > 0 and shown.group(2) == "0.00"
    assert float(shown.group(1)) == pytest.approx(est["total"]["usd"], rel=0.1)


def test_usd_text_and_pairs():
    assert usd_text(0.0012) == "0.0012" and usd_text(1234.5) == "1,234.50" and usd_text(0) == "0.00"
    assert usd_text(0.5) == "0.50" and usd_text(0.000012) == "0.000012"
    assert usd_pair(0.0012, 0) == ("0.0012", "0.00")
    assert usd_pair(0.00123, 0.0012) == ("0.00123", "0.00120")
    assert usd_pair(1500.004, 1500) == ("1,500.004", "1,500.000")


def test_local_server_without_price_is_no_paid_run(tmp_path, no_key):
    """The workflow starts (dry run) with a local server and an unpriced model; a remote one is refused."""
    project = copy_project(tmp_path)
    local = "teacher={backend: openai, model: my-model, base_url: 'http://127.0.0.1:8080/v1', api_key_env: null}"
    proc = snakemake(project, "-n", "results/plan/plan.txt", "--config", local)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = local.replace("127.0.0.1", "llm.example.org")
    proc = snakemake(project, "-n", "results/plan/plan.txt", "--config", remote)
    assert proc.returncode != 0 and "teacher.prices has no entry for model 'my-model'" in proc.stdout + proc.stderr

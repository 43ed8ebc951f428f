"""The plan before a run: the teacher's requests, tokens and dollars per stage, and each
student's training compute in GPU-hours, estimated from the configuration alone (Hub
datasets are not downloaded). A paid run whose estimate exceeds the budget is refused."""

from __future__ import annotations

import math
from collections.abc import Sequence

from herd.compute import gpu_hours, training_flops
from herd.cost import dollars, price, usd_pair, usd_short
from herd.prompts import PROMPT_TEMPLATE

CHARS_PER_TOKEN = 4  # rough English average, used only for estimates
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators of one chat message
WORDS_TO_TOKENS = 1.35
EXPECTED_INSTRUCTION_TOKENS = 24  # one generated instruction with its tags
EXPECTED_RESPONSE_FILL = 0.6  # expected share of max_tokens a response uses
STUDENT_TEMPLATE_TOKENS = len(PROMPT_TEMPLATE.format(instruction="")) // CHARS_PER_TOKEN


def estimate_tokens(messages: list[dict]) -> int:
    return sum(len(m["content"]) // CHARS_PER_TOKEN + MESSAGE_OVERHEAD_TOKENS for m in messages)


def plan(cfg: dict, sample_generation: list[dict], sample_instruction_words: float,
         keep_fraction: float, *, reanswer_rows: int = 0, reanswer_words: float | None = None,
         passthrough_rows: int = 0, uncounted: Sequence[str] = (), per_prompt: float | None = None,
         judge_items: Sequence[dict] = ()) -> dict:
    """Estimate the teacher's work for a run of `cfg`, and the students' training compute.

    `sample_generation` is a rendered generation prompt (its size stands for all
    of them); `sample_instruction_words` the mean length of an instruction;
    `keep_fraction` the share of generated instructions expected to survive the
    filters, which sets the number of responses. Seed rows the teacher answers as
    they are (`reanswer_rows`, of `reanswer_words` words on average) are responses
    too; `passthrough_rows` go into the dataset without the teacher. `uncounted`
    names seed sources of unknown size (a Hub dataset without `limit`). `per_prompt`
    is the mean number of instructions a prompt asks for (default
    `instructions.per_prompt`; fewer where prompts show long examples). `judge_items` are the
    judge's selected items (herd.judge), whose answers and grades are the stage "judge".
    """
    ins, resp, teacher = cfg["instructions"], cfg["responses"], cfg["teacher"]
    gen_requests = ins["example_guided"]["prompts"] + ins["topic_guided"]["prompts"]
    gen_prompt = estimate_tokens(sample_generation)
    asked = ins["per_prompt"] if per_prompt is None else per_prompt
    gen_completion = min(ins["decoding"]["max_tokens"], round(asked * EXPECTED_INSTRUCTION_TOKENS))
    generated = round(gen_requests * asked)
    kept = math.ceil(generated * keep_fraction)
    resp_requests = kept + reanswer_rows
    resp_overhead = len(resp["system_prompt"]) // CHARS_PER_TOKEN + 2 * MESSAGE_OVERHEAD_TOKENS
    instruction_tokens = sample_instruction_words * WORDS_TO_TOKENS
    reanswer_tokens = (reanswer_words if reanswer_words is not None else sample_instruction_words) * WORDS_TO_TOKENS
    resp_prompt = kept * math.ceil(resp_overhead + instruction_tokens) + reanswer_rows * math.ceil(
        resp_overhead + reanswer_tokens)
    resp_completion = resp["decoding"]["max_tokens"] * EXPECTED_RESPONSE_FILL
    usd_per_m = price(teacher)
    stages = {
        "instructions": {"requests": gen_requests, "prompt_tokens": gen_requests * gen_prompt,
                         "completion_tokens": gen_requests * gen_completion,
                         "completion_tokens_max": gen_requests * ins["decoding"]["max_tokens"]},
        "responses": {"requests": resp_requests, "prompt_tokens": resp_prompt,
                      "completion_tokens": round(resp_requests * resp_completion),
                      "completion_tokens_max": resp_requests * resp["decoding"]["max_tokens"]},
    }
    if judge_items:
        stages["judge"] = judge_stage(cfg, judge_items, resp_overhead)
    for s in stages.values():
        s["usd"] = round(dollars(s["prompt_tokens"], s["completion_tokens"], usd_per_m), 6)
        s["usd_max"] = round(dollars(s["prompt_tokens"], s["completion_tokens_max"], usd_per_m), 6)
    total = {k: sum(s[k] for s in stages.values())
             for k in ("requests", "prompt_tokens", "completion_tokens", "completion_tokens_max", "usd", "usd_max")}
    estimate = {
        "teacher": {"backend": teacher["backend"], "model": teacher["model"], "batch": teacher["batch"]},
        "usd_per_million_tokens": usd_per_m,
        "keep_fraction": keep_fraction,
        "instructions_per_prompt": asked,
        "stages": stages,
        "total": total,
        "max_budget_usd": teacher["max_budget_usd"],
        "dataset": {"rows": resp_requests + passthrough_rows, "generated_kept": kept,
                    "reanswer": reanswer_rows, "passthrough": passthrough_rows, "uncounted": list(uncounted)},
    }
    if "students" in cfg:
        rows = resp_requests + passthrough_rows
        train_rows = math.floor(rows * (1 - cfg.get("dataset", {}).get("validation_fraction", 0.1)))
        # a training row: the student prompt, the instruction (generated or seed) and the response
        instruction_mean = ((kept * instruction_tokens + reanswer_rows * reanswer_tokens) / resp_requests
                            if resp_requests else instruction_tokens)
        row_tokens = STUDENT_TEMPLATE_TOKENS + instruction_mean + resp_completion
        estimate["training"] = training_plan(cfg["students"], train_rows, row_tokens, cfg.get("plan", {}))
    return estimate


def judge_stage(cfg: dict, items: Sequence[dict], answer_overhead: float) -> dict:
    """The judge's requests and tokens: the teacher answers each item once, and grades every
    answer set (each student variant, the teacher) and the two controls (the reference and
    a shuffled reference) on each item."""
    from herd.judge import JUDGE_SYSTEM, judge_messages

    judge, n = cfg["judge"], len(items)
    students = len(cfg.get("students", []))
    variants = [v for v in cfg.get("eval", {}).get("variants", []) if v != "teacher"]
    model_sets = students * len(variants) + 1  # + the teacher's own answers
    answer_tokens = judge["max_new_tokens"] * EXPECTED_RESPONSE_FILL
    item_tokens = sum(len(f"{it['instruction']} {it['input']}".split()) for it in items) * WORDS_TO_TOKENS / n
    reference_tokens = sum(len(it["reference"].split()) for it in items) * WORDS_TO_TOKENS / n
    # a grade prompt: the rubric and the item (measured on an empty answer), plus the answer
    rubric = estimate_tokens([{"role": "system", "content": JUDGE_SYSTEM}, *judge_messages(
        {"instruction": "", "input": ""}, "")[1:]])
    grades = n * (model_sets + 2)
    grade_prompt = grades * (rubric + item_tokens) + n * (model_sets * answer_tokens + 2 * reference_tokens)
    grade_fill = judge["decoding"]["max_tokens"] * EXPECTED_RESPONSE_FILL
    return {"requests": n + grades,
            "prompt_tokens": math.ceil(n * (answer_overhead + item_tokens) + grade_prompt),
            "completion_tokens": round(n * answer_tokens + grades * grade_fill),
            "completion_tokens_max": n * judge["max_new_tokens"] + grades * judge["decoding"]["max_tokens"]}


def training_plan(students: Sequence[dict], train_rows: int, row_tokens: float, plan_cfg: dict) -> dict:
    """Tokens, FLOPs and GPU-hours of each student, from the dataset size and its settings.

    Tokens seen = rows seen (train_rows x epochs, or max_steps x batch) x tokens per row,
    a row cut at max_length; FLOPs from `training_flops`; GPU-hours at the configured
    peak and MFU. A student without `parameters` gets no compute estimate."""
    peak, mfu = plan_cfg.get("gpu_peak_tflops", 312.0), plan_cfg.get("gpu_mfu", 0.3)
    rows_out, total = {}, 0.0
    for st in students:
        per_row = min(row_tokens, st["max_length"])
        if st.get("max_steps"):
            processes = st.get("processes") or st.get("gpus") or 1  # data parallel: rows per step x processes
            rows_seen = st["max_steps"] * st["batch_size"] * st["grad_accum"] * processes
        else:
            rows_seen = train_rows * st["epochs"]
        tokens = rows_seen * per_row
        enc_dec = st.get("encoder_decoder", st["from"].get("scratch", {}).get("family") == "t5")
        entry = {"parameters": st.get("parameters"), "encoder_decoder": bool(enc_dec),
                 "gpus": st.get("gpus", 0), "epochs": st["epochs"], "max_steps": st.get("max_steps"),
                 "train_rows": train_rows, "tokens_per_row": round(per_row, 1), "tokens": round(tokens),
                 "flops": None, "gpu_hours": None, "wall_hours": None}
        if st.get("parameters"):
            flops = training_flops(st["parameters"], tokens, entry["encoder_decoder"])
            hours = gpu_hours(flops, peak, mfu)
            entry.update(flops=flops, gpu_hours=round(hours, 2),
                         wall_hours=round(hours / entry["gpus"], 2) if entry["gpus"] else None)
            total += hours
        rows_out[st["name"]] = entry
    return {"gpu_peak_tflops": peak, "gpu_mfu": mfu, "students": rows_out, "total_gpu_hours": round(total, 2)}


def _seed_counts(specs: list[dict], use: str) -> tuple[int, float | None, list[str]]:
    """Rows and mean instruction words of the seed rows with `use`, from `limit` or the files.

    Hub datasets are never downloaded for the plan: they count their `limit` (or, without
    one, are named as uncounted) and their words are unknown (None)."""
    from herd import sources

    rows, words, counted_words, uncounted = 0, 0, 0, []
    for index, spec in enumerate(specs):
        if spec["use"] != use:
            continue
        if spec["format"] == "hf" and not sources.is_local(spec):
            if spec.get("limit"):
                rows += spec["limit"]
            else:
                uncounted.append(spec["source"])
            continue
        seeds = sources.load_spec(spec, index)
        rows += len(seeds)
        words += sum(len(f"{s.instruction} {s.input}".split()) for s in seeds)
        counted_words += len(seeds)
    return rows, (words / counted_words if counted_words else None), uncounted


def plan_from_config(config: dict) -> dict:
    """The plan of a validated configuration, reading its local seed files for prompt sizes.

    It runs when the workflow starts, offline: seed sources that are Hub datasets are not
    loaded; their prompts are assumed `plan.remote_seed_words` long."""
    from herd import sources
    from herd.prompts import format_seed, render_generation
    from herd.rng import rng_for

    specs = config["seed_tasks"]
    remote_words = config["plan"].get("remote_seed_words", 40)
    seeds = sources.load_seed_tasks(specs, local_only=True)
    ins = config["instructions"]
    if seeds:
        shown = rng_for(config["seed"], "plan").sample(seeds, min(ins["examples_per_prompt"], len(seeds)))
        examples = [format_seed(s.instruction, s.input) for s in shown]
        mean_words = sum(len(s.instruction.split()) for s in seeds) / len(seeds)
    else:  # only Hub datasets as examples: placeholders of the assumed length
        examples = [" ".join(["word"] * int(remote_words))] * ins["examples_per_prompt"]
        mean_words = remote_words
    asked = expected_asked(config, [len(format_seed(s.instruction, s.input).split()) for s in seeds], remote_words)
    sample = render_generation(examples, round(asked),
                               ["Topic one", "Topic two", "Topic three"][: ins["topics_per_prompt"]])
    reanswer, reanswer_words, uncounted = _seed_counts(specs, "reanswer")
    passthrough, _, uncounted_pt = _seed_counts(specs, "passthrough")
    remote_reanswer = sum(s.get("limit") or 0 for s in specs
                          if s["use"] == "reanswer" and s["format"] == "hf" and not sources.is_local(s))
    if reanswer:  # the mean over local and Hub rows, the latter at the assumed length
        local_rows = reanswer - remote_reanswer
        reanswer_words = ((reanswer_words or 0) * local_rows + remote_words * remote_reanswer) / reanswer
    judge_items = []
    if config.get("judge", {}).get("instructions"):  # the same items the judge_items job selects
        from herd import judge_tasks

        j = config["judge"]
        judge_items = judge_tasks.select(judge_tasks.load_items(j["instructions"]), j["selection"], j["limit"],
                                         config["seed"])[0]
    return plan(config, sample, mean_words, config["plan"]["keep_fraction"], reanswer_rows=reanswer,
                reanswer_words=reanswer_words, passthrough_rows=passthrough, uncounted=uncounted + uncounted_pt,
                per_prompt=asked, judge_items=judge_items)


def expected_asked(config: dict, local_words: list[int], remote_words: float, samples: int = 2000) -> float:
    """Mean instructions asked per generation prompt, over a seeded sample of example sets
    drawn from the example pool: local seeds at their length, Hub rows (their `limit`) at
    `remote_words`, as the generation stage picks them."""
    from herd import sources
    from herd.prompts import instructions_asked
    from herd.rng import rng_for

    ins = config["instructions"]
    pool = list(local_words) + [int(remote_words)] * sum(
        s.get("limit") or 1 for s in config["seed_tasks"]
        if s["use"] == "examples" and not sources.is_local(s))
    if not pool:
        return float(ins["per_prompt"])
    rng, k = rng_for(config["seed"], "plan-asked"), min(ins["examples_per_prompt"], len(pool))
    asked = [instructions_asked(["w " * n for n in rng.sample(pool, k)], ins["per_prompt"],
                                ins["per_prompt_long"], ins["long_example_words"]) for _ in range(samples)]
    return sum(asked) / len(asked)


def check_budget(estimate: dict) -> None:
    budget = estimate["max_budget_usd"]
    usd = estimate["total"]["usd"]
    if math.isnan(usd):
        model = estimate["teacher"]["model"]
        raise ValueError(
            f"teacher.prices has no entry for model {model!r}, so the cost of this run is unknown. Add its "
            "list price in USD per million tokens to the config, e.g.\n"
            f"  teacher:\n    prices:\n      {model}: {{prompt: 0.5, completion: 1.5}}\n"
            "(prompt: 0 and completion: 0 for a free server; a base_url on localhost is free already)")
    if budget is not None and usd > budget:
        shown_usd, shown_budget = usd_pair(usd, budget)
        raise ValueError(
            f"estimated teacher cost ${shown_usd} exceeds teacher.max_budget_usd ${shown_budget}; "
            "raise the budget or shrink the run (plan above; `snakemake results/plan/plan.txt` writes it)")


def _count(x: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= size:
            return f"{x / size:.3g}{unit}"
    return f"{x:.0f}"


def format_plan(estimate: dict) -> str:
    t = estimate["teacher"]
    lines = [
        f"teacher: {t['backend']} {t['model']}{' (batch API)' if t['batch'] else ''}",
        (f"prices (USD per 1M tokens): prompt {estimate['usd_per_million_tokens']['prompt']}, "
         f"completion {estimate['usd_per_million_tokens']['completion']}"),
        f"{'stage':<14}{'requests':>12}{'prompt tok':>16}{'completion tok':>16}{'USD':>12}{'USD at most':>14}",
    ]
    for name, s in [*estimate["stages"].items(), ("total", estimate["total"])]:
        lines.append(f"{name:<14}{s['requests']:>12,}{s['prompt_tokens']:>16,}{s['completion_tokens']:>16,}"
                     f"{usd_short(s['usd']):>12}{usd_short(s['usd_max']):>14}")
    budget = estimate["max_budget_usd"]
    lines.append(f"budget: {'none set' if budget is None else f'${budget:,.2f}'}; responses assume "
                 f"{estimate['keep_fraction']:.0%} of generated instructions pass the filters")
    if "instructions_per_prompt" in estimate:
        lines.append(f"generation prompts ask for {estimate['instructions_per_prompt']:.1f} instructions each "
                     "on average (fewer next to long examples)")
    data = estimate.get("dataset")
    if data:
        lines.append(f"dataset: {data['rows']:,} rows ({data['generated_kept']:,} generated, "
                     f"{data['reanswer']:,} seed prompts re-answered, {data['passthrough']:,} passed through)"
                     + (f"; not counted (Hub datasets without limit): {', '.join(data['uncounted'])}"
                        if data["uncounted"] else ""))
    training = estimate.get("training")
    if training:
        lines.append(f"students (GPU-hours = FLOPs / ({training['gpu_peak_tflops']:g} TFLOP/s peak x "
                     f"{training['gpu_mfu']:.0%} MFU); FLOPs = 6 x parameters x tokens, 3 x for encoder-decoders)")
        lines.append(f"{'student':<22}{'params':>8}{'arch':>8}{'tok/row':>9}{'tokens':>9}{'FLOPs':>10}"
                     f"{'GPUs':>6}{'GPU-hours':>11}{'wall h':>9}")
        for name, st in training["students"].items():
            params = _count(st["parameters"]) if st["parameters"] else "?"
            flops = f"{st['flops']:.2e}" if st["flops"] is not None else "-"
            hours = f"{st['gpu_hours']:,.1f}" if st["gpu_hours"] is not None else "-"
            wall = f"{st['wall_hours']:,.1f}" if st["wall_hours"] is not None else "-"
            arch = "enc-dec" if st["encoder_decoder"] else "dec"
            lines.append(f"{name:<22}{params:>8}{arch:>8}{st['tokens_per_row']:>9.0f}{_count(st['tokens']):>9}"
                         f"{flops:>10}{st['gpus']:>6}{hours:>11}{wall:>9}")
        lines.append(f"{'total':<22}{'':>59}{training['total_gpu_hours']:>11,.1f}")
    return "\n".join(lines) + "\n"

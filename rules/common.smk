# Helpers shared by the rules: file lists derived from the config, and rerun triggers.
from herd.code_closure import script_version
from herd.config import SAFE_NAME, student as student_cfg
from herd.retry import retry_param
from herd.sources import is_local
from herd.teacher import RUN_ONLY_KEYS

VARIANT_DIRS = {
    "base": "results/student_base/{student}",  # the checkpoint before fine-tuning
    "pytorch": "results/students/{student}/model",
    "onnx": "results/export/{student}/onnx",
    "onnx-int8": "results/export/{student}/onnx-int8",
}

# Every wildcard is one safe path part (herd.config.SAFE_NAME for students): a target such as
# results/student_base/.hidden matches no rule, and no job writes outside its stage folder.
wildcard_constraints:
    kind="example|topic",
    shard=r"\d+",
    student=SAFE_NAME,
    variant="|".join(VARIANT_DIRS),


def script_code(script):
    """A rule's code rerun trigger: a hash of scripts/<script> and of every herd module it
    reaches through imports, lazy ones included (herd.code_closure); no list kept by hand."""
    return script_version(os.path.join(workflow.basedir, "scripts", script))


def instruction_shards():
    """The generation shards the config asks for (none for a run of re-answered seeds only);
    generation without example seeds stops the workflow here, before any job."""
    from herd.config import ConfigError
    from herd.instructions import generation_parts
    from snakemake.exceptions import WorkflowError

    try:
        parts = generation_parts(config)
    except ConfigError as err:
        raise WorkflowError(f"config: {err}")
    return [
        f"results/instructions/{kind}/{shard}.jsonl"
        for kind, part in parts.items()
        for shard in range(min(part["shards"], part["prompts"]))
    ]


def response_shards():
    return [f"results/responses/{i}.jsonl" for i in range(config["responses"]["shards"])]


def response_stats_files():  # the shards' failed requests go into the card and stats.json
    return [p.replace(".jsonl", ".stats.json") for p in response_shards()]


def indexed_seed_entries():
    """Every seed_tasks entry with its position, which seed rows carry in their ids: licences are per file."""
    keys = ("path", "format", "use", "source", "licence")
    return [{"index": i, **{k: s[k] for k in keys}} for i, s in enumerate(config["seed_tasks"])]


def seed_files():  # local seed files and folders; a Hub dataset is fetched by the jobs reading it
    return [s["path"] for s in config["seed_tasks"] if is_local(s)]


def student_names():
    return [s["name"] for s in config["students"]]


def base_tokenizer_input(wildcards):
    """A scratch student that borrows another student's tokenizer needs its base first."""
    scratch = student_cfg(config, wildcards.student)["from"].get("scratch")
    if scratch and scratch["tokenizer"] in student_names():
        return {"tokenizer": f"results/student_base/{scratch['tokenizer']}"}
    return {}


def student_variants():
    """The eval variants that are scored per student (all but `teacher`)."""
    return [v for v in config["eval"]["variants"] if v in VARIANT_DIRS]


def teacher_eval_files():
    """results/eval/teacher.csv and its item scores, when eval.variants names the teacher."""
    if "teacher" not in config["eval"]["variants"]:
        return {}
    files = {"teacher_rows": "results/eval/teacher.csv", "teacher_items": "results/eval/teacher.items.jsonl"}
    if teacher_uses_gguf():  # its parameter count, for the summary
        files["teacher_model"] = "results/teacher_model/model.gguf"
    return files


def variant_dir(wildcards):
    return VARIANT_DIRS[wildcards.variant].format(student=wildcards.student)


def instruction_params(wildcards):
    """Settings of one kind of generation: changing the other kind reruns nothing here."""
    cfg = dict(config["instructions"])
    cfg.pop("topic_guided" if wildcards.kind == "example" else "example_guided")
    return cfg


def teacher_uses_gguf():
    """In-process teachers run a packaged GGUF file or a .gguf path, assembled as a target."""
    from herd.assets import PACKAGED

    t = config["teacher"]
    return t["backend"] == "llamacpp" or (
        t["backend"] == "transformers" and (t["model"] in PACKAGED or t["model"].endswith(".gguf")))


def teacher_inputs():
    """The teacher's manifest, and its GGUF file when it runs in process."""
    files = {"manifest": "results/teacher_model/manifest.json"}
    if teacher_uses_gguf():
        files["model"] = "results/teacher_model/model.gguf"
    return files


def teacher_params():
    """The teacher's settings that make its answers; how a job runs them (RUN_ONLY_KEYS) reruns nothing."""
    return {k: v for k, v in config["teacher"].items() if k not in RUN_ONLY_KEYS}


# ---------------------------------------------------------------- evaluation and the judge


def teacher_eval_params():
    """The eval settings that choose the items and how they are scored: other eval keys
    (the student variants, ROUGE, GPUs) rerun nothing here."""
    keys = ("benchmarks", "benchmark_root", "limit", "instruction_template")
    return {k: config["eval"][k] for k in keys if k in config["eval"]}


def judge_enabled():
    return bool(config["judge"]["instructions"])


def judge_instructions(wildcards):
    """The instruction file, checked here so that a missing one names its config key."""
    from pathlib import Path

    path = config["judge"]["instructions"]
    if not path:
        raise WorkflowError("judge.instructions is null: the judge stage is off")
    if not Path(path).is_file():
        raise WorkflowError(f"judge.instructions: file {path} not found (set the key to the Self-Instruct "
                            "user-oriented JSONL file, or null to turn the judge off)")
    return path


def judge_answer_files():
    """Every student variant's answers (the teacher's eval variant, if any, is the teacher's own set)."""
    return [f"results/judge/answers/{s}/{v}.jsonl"
            for s in student_names() for v in config["eval"]["variants"] if v != "teacher"] + [
        "results/judge/answers/teacher.jsonl"]


def judge_human_sheets(wildcards):
    if not config["judge"]["human_sheets"]:
        raise WorkflowError("judge.human_sheets is empty: list the filled rating sheets (copies of "
                            "results/judge/rating_sheet.csv, one per rater) to summarize them")
    return config["judge"]["human_sheets"]


def judge_targets():
    """What results/eval.csv waits for when the judge is on."""
    if not judge_enabled():
        return []
    files = ["results/judge/summary.csv"]
    if config["judge"]["human_sheets"]:
        files.append("results/judge/human_summary.csv")
    return files


# ---- the run report (rules/report.smk)
REPORT_CAPTIONS = "../config/report"


def teacher_ledgers():
    """Every ledger of teacher requests: generation, responses and, when on, the judge."""
    files = [p.replace(".jsonl", ".ledger.jsonl") for p in [*instruction_shards(), *response_shards()]]
    if judge_enabled():
        files += ["results/judge/answers/teacher.ledger.jsonl", "results/judge/ledger.jsonl"]
    return files


def export_params():
    """config.export as the export job uses it: the gate's max_benchmark_drop belongs to eval_table."""
    cfg = {**config["export"], "int8": {**config["export"]["int8"]}}
    cfg["int8"]["gate"] = {k: v for k, v in cfg["int8"]["gate"].items() if k != "max_benchmark_drop"}
    return cfg

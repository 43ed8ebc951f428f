# Helpers shared by the rules: file lists derived from the config, and rerun triggers.
from herd.config import code_version, student as student_cfg
from herd.sources import is_local

VARIANT_DIRS = {
    "pytorch": "results/students/{student}/model",
    "onnx": "results/export/{student}/onnx",
    "onnx-int8": "results/export/{student}/onnx-int8",
}

wildcard_constraints:
    kind="example|topic",
    shard=r"\d+",
    student=r"[A-Za-z0-9._-]+",
    variant="|".join(VARIANT_DIRS),


def instruction_shards():
    parts = {"example": config["instructions"]["example_guided"],
             "topic": config["instructions"]["topic_guided"]}
    return [
        f"results/instructions/{kind}/{shard}.jsonl"
        for kind, part in parts.items() if part["prompts"] > 0
        for shard in range(min(part["shards"], part["prompts"]))
    ]


def response_shards():
    return [f"results/responses/{i}.jsonl" for i in range(config["responses"]["shards"])]


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
    return {"teacher": config["teacher"], "seed": config["seed"]}

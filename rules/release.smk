# Folders a user can pick up: each student's checkpoints with model cards, and sample answers.
from herd.model_files import release_files, released_variants


rule release:
    input:
        unpack(lambda wc: release_files(wc.student, config["eval"]["variants"], VARIANT_DIRS)),
    output:
        directory("results/models/{student}"),
    log:
        "logs/release/{student}.log",
    params:
        cfg=lambda wc: student_cfg(config, wc.student),
        variants=released_variants(config["eval"]["variants"]),
        dataset="results/dataset",
        teacher=config["teacher"]["model"],
        code=script_code("release.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/release.py"


rule samples:
    input:
        model=variant_dir,
        prompts=config["samples"]["prompts"],
    output:
        "results/samples/{student}/{variant}.jsonl",
    log:
        "logs/samples/{student}/{variant}.log",
    benchmark:
        "benchmarks/samples/{student}/{variant}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        max_new_tokens=config["samples"]["max_new_tokens"],
        code=script_code("samples.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/samples.py"


rule samples_table:
    input:
        expand("results/samples/{student}/{variant}.jsonl", student=student_names(), variant=student_variants()),
    output:
        "results/samples.md",
    log:
        "logs/samples_table/samples_table.log",
    params:
        max_new_tokens=config["samples"]["max_new_tokens"],
        code=script_code("samples_table.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/samples_table.py"

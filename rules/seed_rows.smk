# Seed files used as data: prompts the teacher re-answers, and rows kept with their own outputs.


rule seed_rows:
    input:
        seed_files(),
    output:
        reanswer="results/seed_rows/reanswer.jsonl",
        passthrough="results/seed_rows/passthrough.jsonl",
    log:
        "logs/seed_rows/seed_rows.log",
    params:
        seed_tasks=config["seed_tasks"],
        code=script_code("seed_rows.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/seed_rows.py"

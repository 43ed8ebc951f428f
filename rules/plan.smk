# The teacher's bill before it is run: requests, tokens and dollars from the config alone.
# A paid run is also checked against teacher.max_budget_usd when the workflow starts (Snakefile).


rule plan:
    input:
        seeds=seed_files(),
    output:
        json="results/plan/plan.json",
        text="results/plan/plan.txt",
    log:
        "logs/plan/plan.log",
    params:
        config={k: config[k] for k in ("teacher", "instructions", "responses", "plan", "seed_tasks", "seed")},
        code=code_version("cost", "prompts"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/plan.py"

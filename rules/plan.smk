# The bill before the run: the teacher's requests, tokens and dollars, and the students'
# GPU-hours, from the config alone (Hub datasets are not downloaded for it).
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
        config={k: config[k] for k in ("teacher", "instructions", "responses", "plan", "seed_tasks", "seed",
                                       "dataset", "students", "judge", "eval")},
        code=script_code("plan.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/plan.py"

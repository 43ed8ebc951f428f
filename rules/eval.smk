# Evaluation of every (student, variant) and the results table.


rule eval:
    input:
        model=variant_dir,
        validation="results/dataset/validation.jsonl",
    output:
        rows="results/eval/{student}/{variant}.csv",
        item_scores="results/eval/{student}/{variant}.items.jsonl",
    log:
        "logs/eval/{student}/{variant}.log",
    benchmark:
        "benchmarks/eval/{student}/{variant}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
    params:
        cfg=config["eval"],
        seed=config["seed"],
        code=code_version("evaluation", "benchmarks", "prompts", "native"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/eval.py"


rule eval_table:
    input:
        rows=expand("results/eval/{student}/{variant}.csv",
                    student=student_names(), variant=config["eval"]["variants"]),
        item_scores=expand("results/eval/{student}/{variant}.items.jsonl",
                     student=student_names(), variant=config["eval"]["variants"]),
        models=expand("results/students/{student}/model", student=student_names()),
        # results/eval.csv stands for the whole run: the data report is built with it
        diversity="results/diversity/summary.json",
        card="results/dataset/README.md",
        parity=expand("results/export/{student}/parity.json", student=student_names()),
    output:
        table="results/eval.csv",
        summary="results/eval_summary.csv",
        summary_md="results/eval_summary.md",
    log:
        "logs/eval_table/eval_table.log",
    params:
        seed=config["seed"],
        students=student_names(),
        code=code_version("eval_summary"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/eval_table.py"

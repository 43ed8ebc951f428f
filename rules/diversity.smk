# Diversity of the generated instructions: embeddings, clusters, a 2-D map.


rule diversity:
    input:
        train="results/dataset/train.jsonl",
        validation="results/dataset/validation.jsonl",
        seeds=seed_files(),
    output:
        summary="results/diversity/summary.json",
        plot=report("results/diversity/map.png", category="Diversity",
                    caption="../config/report/diversity.rst"),
    log:
        "logs/diversity/diversity.log",
    benchmark:
        "benchmarks/diversity/diversity.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        cfg=config["diversity"],
        seed_tasks=config["seed_tasks"],
        seed=config["seed"],
        code=code_version("diversity"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/diversity.py"

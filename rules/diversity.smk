# Diversity of the instructions: embeddings, clusters, a 2-D map with the seeds, MATTR,
# duplicate rates (in the dataset, and before the filter from its kept + excluded records).


rule diversity:
    input:
        train="results/dataset/train.jsonl",
        validation="results/dataset/validation.jsonl",
        kept="results/filter/instructions.jsonl",
        excluded="results/filter/exclusions.jsonl",
        filter_stats="results/filter/stats.json",
        seeds=seed_files(),
    output:
        summary=report("results/diversity/summary.json", category="3. Diversity",
                       caption="../config/report/diversity.rst", labels={"figure": "summary (JSON)"}),
        plot=report("results/diversity/map.png", category="3. Diversity",
                    caption="../config/report/diversity.rst", labels={"figure": "t-SNE map"}),
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
        code=script_code("diversity.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/diversity.py"

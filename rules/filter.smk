# Self-Instruct / Alpaca filters over all generated instructions, in generation order.


rule filter:
    input:
        shards=instruction_shards(),
        seeds=seed_files(),
    output:
        kept="results/filter/instructions.jsonl",
        excluded="results/filter/exclusions.jsonl",
        stats="results/filter/stats.json",
    log:
        "logs/filter/filter.log",
    benchmark:
        "benchmarks/filter/filter.tsv"
    params:
        cfg=config["filter"],
        seed_tasks=config["seed_tasks"],
        code=code_version("filters", "sources"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/filter.py"

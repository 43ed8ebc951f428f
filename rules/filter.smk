# Self-Instruct / Alpaca filters over all generated instructions, in generation order
# (optionally an embedding near-duplicate step: filter.embedding_threshold).


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
    threads: 2 if config["filter"].get("embedding_threshold") is not None else 1
    params:
        cfg=config["filter"],
        seed_tasks=config["seed_tasks"],
        code=code_version("filters", "sources", "diversity"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/filter.py"

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
    threads:
        max(config["filter"]["rouge_workers"], 2 if config["filter"].get("embedding_threshold") is not None else 1)
    params:
        # rouge_workers changes the speed, not the result: the script reads it from the config
        cfg={k: v for k, v in config["filter"].items() if k != "rouge_workers"},
        seed_tasks=config["seed_tasks"],
        code=script_code("filter.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/filter.py"

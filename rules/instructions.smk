# Example-guided and topic-guided instruction generation, in shards.


rule instructions:
    input:
        seeds=seed_files(),
        topics="results/topics/topics.txt",
        **teacher_inputs(),
    output:
        records="results/instructions/{kind}/{shard}.jsonl",
        stats="results/instructions/{kind}/{shard}.stats.json",
        ledger="results/instructions/{kind}/{shard}.ledger.jsonl",
    log:
        "logs/instructions/{kind}/{shard}.log",
    benchmark:
        "benchmarks/instructions/{kind}/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=3000,
    params:
        cfg=instruction_params,
        seed_tasks=config["seed_tasks"],
        teacher=teacher_params(),
        code=code_version("instructions", "prompts", "teacher", "sources"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/instructions.py"

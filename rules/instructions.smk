# Example-guided and topic-guided instruction generation, in shards.


rule instructions:
    input:
        seeds=seed_files(),
        # only topic-guided shards read the topics: a run without them needs no topic file
        topics=lambda wildcards: "results/topics/topics.txt" if wildcards.kind == "topic" else [],
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
        seed=config["seed"],
        # changes while the shard's last run left failed requests (herd.retry): each invocation retries them
        retry=lambda wc: retry_param(f"results/instructions/{wc.kind}/{wc.shard}.stats.json"),
        code=script_code("instructions.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/instructions.py"

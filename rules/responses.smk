# The teacher answers every kept instruction and every seed row to re-answer, in shards.
rule responses:
    input:
        instructions="results/filter/instructions.jsonl",
        reanswer="results/seed_rows/reanswer.jsonl",
        **teacher_inputs(),
    output:
        records="results/responses/{shard}.jsonl",
        stats="results/responses/{shard}.stats.json",
        ledger="results/responses/{shard}.ledger.jsonl",
    log:
        "logs/responses/{shard}.log",
    benchmark:
        "benchmarks/responses/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=3000,
    params:
        cfg=config["responses"],
        teacher=teacher_params(),
        seed=config["seed"],
        # changes while the shard's last run left failed requests (herd.retry): each invocation retries them
        retry=lambda wc: retry_param(f"results/responses/{wc.shard}.stats.json"),
        code=script_code("responses.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/responses.py"

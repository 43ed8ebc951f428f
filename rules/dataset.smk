# The distilled dataset in LaMini's schema, with a card.


rule dataset:
    input:
        shards=response_shards(),
        response_stats=response_stats_files(),
        instruction_stats=[p.replace(".jsonl", ".stats.json") for p in instruction_shards()],
        passthrough="results/seed_rows/passthrough.jsonl",
        filter_stats="results/filter/stats.json",
        manifest="results/teacher_model/manifest.json",
    output:
        train="results/dataset/train.parquet",
        validation="results/dataset/validation.parquet",
        train_jsonl="results/dataset/train.jsonl",
        validation_jsonl="results/dataset/validation.jsonl",
        card="results/dataset/README.md",
        stats="results/dataset/stats.json",
    log:
        "logs/dataset/dataset.log",
    params:
        cfg=config["dataset"],
        seed=config["seed"],
        settings={
            "teacher": config["teacher"]["model"],
            "backend": config["teacher"]["backend"],
            "instruction_decoding": config["instructions"]["decoding"],
            "response_decoding": config["responses"]["decoding"],
        },
        seed_entries=indexed_seed_entries(),
        code=script_code("dataset.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/dataset.py"

# Fine-tune each student on the distilled data (loss on response tokens only).


rule students:
    input:
        base="results/student_base/{student}",
        train="results/dataset/train.jsonl",
        validation="results/dataset/validation.jsonl",
    output:
        model=directory("results/students/{student}/model"),
        metrics="results/students/{student}/metrics.json",
    log:
        "logs/students/{student}.log",
    benchmark:
        "benchmarks/students/{student}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        # GPUs of this student's job (students[].gpus, default 0): the slurm executor turns it
        # into sbatch --gpus; a profile's set-resources for this rule would override it
        gpu=lambda wc: student_cfg(config, wc.student).get("gpus", 0),
    params:
        # the checkpoint interval changes no weight: the script reads it from the config, so a new
        # interval retrains nothing
        cfg=lambda wc: {k: v for k, v in student_cfg(config, wc.student).items() if k != "checkpoint_every"},
        seed=config["seed"],
        code=script_code("students.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/students.py"

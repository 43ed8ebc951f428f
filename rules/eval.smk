# Evaluation of every (student, variant) and the results table.


rule eval:
    input:
        model=variant_dir,
        validation="results/dataset/validation.jsonl",
    output:
        rows="results/eval/{student}/{variant}.csv",
        item_scores="results/eval/{student}/{variant}.items.jsonl",
    log:
        "logs/eval/{student}/{variant}.log",
    benchmark:
        "benchmarks/eval/{student}/{variant}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
        # GPUs of each eval job (eval.gpus, default 0): the slurm executor turns it into
        # sbatch --gpus; PyTorch variants run on it, ONNX variants stay on the CPU
        gpu=lambda wc: 0 if wc.variant.startswith("onnx") else (config["eval"].get("gpus") or 0),
    params:
        # what scores the items; the variants listed and the GPUs rerun nothing
        cfg={k: v for k, v in config["eval"].items() if k not in ("variants", "gpus")},
        seed=config["seed"],
        code=script_code("eval.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/eval.py"


rule eval_table:
    input:
        rows=expand("results/eval/{student}/{variant}.csv", student=student_names(), variant=student_variants()),
        item_scores=expand("results/eval/{student}/{variant}.items.jsonl",
                           student=student_names(), variant=student_variants()),
        # the teacher, scored once on the same items, when eval.variants names it
        **teacher_eval_files(),
        # LaMini's human evaluation, graded by the judge (when judge.instructions is set)
        judge=judge_targets(),
        models=expand("results/students/{student}/model", student=student_names()),
        # results/eval.csv stands for the whole run: the data report is built with it
        diversity="results/diversity/summary.json",
        card="results/dataset/README.md",
        parity=expand("results/export/{student}/parity.json", student=student_names()),
        # folders a user can pick up (checkpoints with model cards) and answers for people to read
        release=expand("results/models/{student}", student=student_names()),
        samples="results/samples.md",
    output:
        table="results/eval.csv",
        summary="results/eval_summary.csv",
        summary_md="results/eval_summary.md",
    log:
        "logs/eval_table/eval_table.log",
    params:
        seed=config["seed"],
        students=student_names(),
        # the int8 gate's benchmark half (export.int8.gate.max_benchmark_drop) and what a failure does
        int8=config["export"]["int8"],
        code=script_code("eval_table.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/eval_table.py"

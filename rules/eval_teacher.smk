# The teacher, scored once on the students' benchmark items (when eval.variants names `teacher`).


rule eval_teacher:
    input:
        **teacher_inputs(),
    output:
        rows="results/eval/teacher.csv",
        item_scores="results/eval/teacher.items.jsonl",
    log:
        "logs/eval_teacher/eval_teacher.log",
    benchmark:
        "benchmarks/eval_teacher/eval_teacher.tsv"
    threads: 2
    resources:
        # llama.cpp keeps a logit row per context position: n_ctx x vocabulary floats (1.2 GB for the 0.5B, n_ctx 2048)
        mem_mb=4000,
    params:
        cfg=teacher_eval_params(),
        # what the teacher is, not how it samples: a new temperature rescores nothing
        teacher={k: config["teacher"][k] for k in ("backend", "model", "model_id", "n_ctx")},
        seed=config["seed"],
        code=script_code("eval_teacher.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/eval_teacher.py"

# The judge: LaMini's A-D human evaluation, graded by the teacher model (and by people, from a
# blinded rating sheet). Off while judge.instructions is null.


rule judge_items:
    input:
        instructions=judge_instructions,
    output:
        selected="results/judge/items.jsonl",
    log:
        "logs/judge_items/judge_items.log",
    params:
        cfg={k: config["judge"][k] for k in ("selection", "limit")},
        seed=config["seed"],
        code=script_code("judge_items.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/judge_items.py"


rule judge_answers:
    input:
        selected="results/judge/items.jsonl",
        model=variant_dir,
    output:
        answers="results/judge/answers/{student}/{variant}.jsonl",
    log:
        "logs/judge_answers/{student}/{variant}.log",
    benchmark:
        "benchmarks/judge_answers/{student}/{variant}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
    params:
        max_new_tokens=config["judge"]["max_new_tokens"],
        code=script_code("judge_answers.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/judge_answers.py"


rule judge_teacher_answers:
    input:
        selected="results/judge/items.jsonl",
        **teacher_inputs(),
    output:
        answers="results/judge/answers/teacher.jsonl",
        ledger="results/judge/answers/teacher.ledger.jsonl",
    log:
        "logs/judge_teacher_answers/judge_teacher_answers.log",
    benchmark:
        "benchmarks/judge_teacher_answers/judge_teacher_answers.tsv"
    threads: 2
    resources:
        mem_mb=3000,
    params:
        cfg={k: config["judge"][k] for k in ("max_new_tokens", "max_failed_fraction")},
        system_prompt=config["responses"]["system_prompt"],
        teacher=teacher_params(),
        seed=config["seed"],
        code=script_code("judge_teacher_answers.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/judge_teacher_answers.py"


rule judge_grade:
    input:
        selected="results/judge/items.jsonl",
        answers=judge_answer_files(),
        **teacher_inputs(),
    output:
        grades="results/judge/grades.jsonl",
        ledger="results/judge/ledger.jsonl",
    log:
        "logs/judge_grade/judge_grade.log",
    benchmark:
        "benchmarks/judge_grade/judge_grade.tsv"
    threads: 2
    resources:
        mem_mb=3000,
    params:
        cfg={k: config["judge"][k] for k in ("decoding", "max_failed_fraction")},
        teacher=teacher_params(),
        seed=config["seed"],
        code=script_code("judge_grade.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/judge_grade.py"


rule judge_summary:
    input:
        selected="results/judge/items.jsonl",
        grades="results/judge/grades.jsonl",
    output:
        summary="results/judge/summary.csv",
        summary_md="results/judge/summary.md",
        sheet="results/judge/rating_sheet.csv",
        key="results/judge/rating_key.csv",
    log:
        "logs/judge_summary/judge_summary.log",
    params:
        seed=config["seed"],
        code=script_code("judge_summary.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/judge_summary.py"


rule judge_human:
    input:
        sheets=judge_human_sheets,
        key="results/judge/rating_key.csv",
    output:
        summary="results/judge/human_summary.csv",
        summary_md="results/judge/human_summary.md",
    log:
        "logs/judge_human/judge_human.log",
    params:
        seed=config["seed"],
        code=script_code("judge_human.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/judge_human.py"

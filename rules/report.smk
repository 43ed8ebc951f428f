# The run report's figures and pages, drawn by small jobs from each stage's own files, and the
# `report` target that gathers them with the whole run:
#   snakemake --cores 2 report --report results/report.html --report-after-run
# Categories are numbered so that the report lists them in the pipeline's order.

rule report_plan:
    input:
        plan="results/plan/plan.json",
        ledgers=teacher_ledgers(),
        metrics=expand("results/students/{student}/metrics.json", student=student_names()),
    output:
        figure=report("results/report/plan_cost.png", category="1. Plan and cost",
                      caption=f"{REPORT_CAPTIONS}/plan_cost.rst", labels={"figure": "planned vs spent"}),
        table=report("results/report/plan_cost.html", category="1. Plan and cost",
                     caption=f"{REPORT_CAPTIONS}/plan_cost.rst", labels={"figure": "table"}),
    log:
        "logs/report/plan.log",
    params:
        code=script_code("report_plan.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/report_plan.py"


rule report_data:
    input:
        filter_stats="results/filter/stats.json",
        dataset_stats="results/dataset/stats.json",
        card="results/dataset/README.md",
    output:
        figure=report("results/report/filter_drops.png", category="2. Data",
                      caption=f"{REPORT_CAPTIONS}/filter_drops.rst", labels={"figure": "drops by reason"}),
        card=report("results/report/dataset_card.html", category="2. Data",
                    caption=f"{REPORT_CAPTIONS}/dataset_card.rst", labels={"figure": "dataset card"}),
    log:
        "logs/report/data.log",
    params:
        code=script_code("report_data.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/report_data.py"


rule report_training:
    input:
        metrics=expand("results/students/{student}/metrics.json", student=student_names()),
    output:
        figure=report("results/report/training.png", category="4. Training",
                      caption=f"{REPORT_CAPTIONS}/training.rst", labels={"figure": "loss curves"}),
    log:
        "logs/report/training.log",
    params:
        code=script_code("report_training.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/report_training.py"


rule report_export:
    input:
        parity=expand("results/export/{student}/parity.json", student=student_names()),
    output:
        figure=report("results/report/export.png", category="5. Export",
                      caption=f"{REPORT_CAPTIONS}/export.rst", labels={"figure": "sizes and parity"}),
        table=report("results/report/export.html", category="5. Export",
                     caption=f"{REPORT_CAPTIONS}/export.rst", labels={"figure": "table"}),
    log:
        "logs/report/export.log",
    params:
        code=script_code("report_export.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/report_export.py"


rule report_eval:
    input:
        table="results/eval.csv",
        summary="results/eval_summary.csv",
    output:
        table=report("results/report/eval_summary.html", category="6. Evaluation",
                     caption=f"{REPORT_CAPTIONS}/eval_summary.rst", labels={"figure": "1 summary table"}),
        tasks=report("results/report/eval_tasks.png", category="6. Evaluation",
                     caption=f"{REPORT_CAPTIONS}/eval_tasks.rst", labels={"figure": "2 scores per task"}),
        size=report("results/report/eval_vs_parameters.png", category="6. Evaluation",
                    caption=f"{REPORT_CAPTIONS}/eval_vs_parameters.rst",
                    labels={"figure": "3 average vs parameters"}),
    log:
        "logs/report/eval.log",
    params:
        code=script_code("report_eval.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/report_eval.py"


rule report_judge:
    input:
        summary="results/judge/summary.csv",
    output:
        figure=report("results/report/judge_grades.png", category="6. Evaluation",
                      caption=f"{REPORT_CAPTIONS}/judge_grades.rst", labels={"figure": "4 judge grades"}),
    log:
        "logs/report/judge.log",
    params:
        code=script_code("report_judge.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/report_judge.py"


rule report_samples:
    input:
        samples="results/samples.md",
    output:
        page=report("results/report/samples.html", category="7. Samples",
                    caption=f"{REPORT_CAPTIONS}/samples.rst", labels={"figure": "answers side by side"}),
    log:
        "logs/report/samples.log",
    params:
        code=script_code("report_samples.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/report_samples.py"


rule report:
    input:
        "results/eval.csv",
        "results/diversity/summary.json",
        "results/report/plan_cost.png",
        "results/report/filter_drops.png",
        "results/report/training.png",
        "results/report/export.png",
        "results/report/eval_tasks.png",
        ["results/report/judge_grades.png"] if judge_enabled() else [],
        "results/report/samples.html",

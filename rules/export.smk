# ONNX export of each student, int8 quantization (the first flavour that passes the gate), and parity checks.


rule export:
    input:
        model="results/students/{student}/model",
    output:
        onnx=directory("results/export/{student}/onnx"),
        int8=directory("results/export/{student}/onnx-int8"),
        parity="results/export/{student}/parity.json",
    log:
        "logs/export/{student}.log",
    benchmark:
        "benchmarks/export/{student}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        # without the gate's benchmark half, which the evaluation table applies: changing it re-exports nothing
        cfg=export_params(),
        code=script_code("export.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/export.py"

# Topics for topic-guided generation, filtered from a topic source.


rule topics:
    input:
        config["topics"]["path"],
    output:
        topics="results/topics/topics.txt",
        stats="results/topics/stats.json",
    log:
        "logs/topics/topics.log",
    params:
        cfg=config["topics"],
        code=script_code("topics.py"),
    conda:
        "../envs/herd.yaml"
    script:
        "../scripts/topics.py"

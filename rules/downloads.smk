# Downloads of public inputs named in the config: the Wikipedia category dump of the paper's
# topics (topics.download_url, saved as topics.path). A local rule: login nodes reach the
# internet where compute nodes often do not. curl writes beside the target and renames it
# only when the whole file arrived, so an interrupted download never looks complete.

if config["topics"].get("download_url"):

    localrules:
        download_topics,

    rule download_topics:
        output:
            config["topics"]["path"],
        log:
            "logs/download_topics/download_topics.log",
        params:
            url=config["topics"]["download_url"],
        shell:
            "tmp=$(mktemp '{output}.XXXXXX.part') && trap 'rm -f \"$tmp\"' EXIT && "
            "curl --fail --location --silent --show-error --retry 5 --retry-delay 10 "
            "--output \"$tmp\" {params.url:q} 2> {log:q} && mv \"$tmp\" {output:q}"

"""Filter the configured topic source into one topic a line."""
import logging

from herd import io, logs, wikipedia

logs.to_file(snakemake.log[0])
path = snakemake.input[0]
kept, stats = wikipedia.filter_topic_source(path, snakemake.params.cfg)
io.write_text(snakemake.output.topics, "\n".join(kept) + "\n")
io.write_json(snakemake.output.stats, stats)
logging.info("topics: %d kept of %s", len(kept), path)

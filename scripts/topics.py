"""Filter the configured topic source into one topic a line."""
import logging

from herd import io, logs, sources

logs.to_file(snakemake.log[0])
cfg = snakemake.params.cfg
titles = sources.load_topics(snakemake.input[0], cfg["format"])
kept, dropped = sources.filter_topics(titles, cfg["max_words"])
if not kept:
    raise ValueError(f"{snakemake.input[0]}: no topic left after filtering (topics.max_words={cfg['max_words']})")
io.write_text(snakemake.output.topics, "\n".join(kept) + "\n")
io.write_json(snakemake.output.stats, {"input": len(titles), "kept": len(kept), "dropped": dropped})
logging.info("topics: %d in, %d kept, dropped %s", len(titles), len(kept), dropped)

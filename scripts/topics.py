"""Filter the configured topic source into one topic a line."""
import logging

from herd import io, logs, sources, wikipedia

logs.to_file(snakemake.log[0])
cfg, path = snakemake.params.cfg, snakemake.input[0]
if cfg["format"] == "mediawiki_sql":
    kept, stats = wikipedia.filter_categories(path, max_words=cfg["max_words"], min_subcats=cfg["min_subcats"],
                                              min_pages=cfg["min_pages"], pages=cfg["pages"])
else:
    titles = sources.load_topics(path, cfg["format"], cfg["max_chars"])
    kept, dropped = sources.filter_topics(titles, cfg["max_words"])
    stats = {"input": len(titles), "kept": len(kept), "dropped": dropped}
if not kept:
    raise ValueError(f"{path}: no topic left after filtering (see the topics settings in config/schema.yaml)")
io.write_text(snakemake.output.topics, "\n".join(kept) + "\n")
io.write_json(snakemake.output.stats, stats)
logging.info("topics: %d kept of %s", len(kept), path)

"""Select the judge's items from the Self-Instruct user-oriented instructions."""
import logging

from herd import io, judge_tasks, logs

logs.to_file(snakemake.log[0])
cfg = snakemake.params.cfg
items, counts = judge_tasks.select(judge_tasks.load_items(snakemake.input.instructions), cfg["selection"], cfg["limit"],
                             snakemake.params.seed)
io.write_jsonl(snakemake.output.selected, items)
logging.info("judge items: %s", counts)

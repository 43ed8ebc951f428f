"""Answer the fixed sample prompts with one (student, variant)."""
from herd import io, logs, samples

logs.to_file(snakemake.log[0])
wc = snakemake.wildcards
rows = samples.answer_all(wc.variant, snakemake.input.model, samples.read_prompts(snakemake.input.prompts),
                          snakemake.params.max_new_tokens, threads=snakemake.threads)
io.write_jsonl(snakemake.output[0], [{"student": wc.student, "variant": wc.variant, **r} for r in rows])

"""How diverse the instructions are: embeddings, clusters, a map, MATTR, duplicate rates.

The dataset's instructions, per `instruction_source`, and the seed tasks shown to the
teacher (the `seed` group) are embedded with a sentence model, clustered (k-means, top
TF-IDF terms per cluster) and projected to 2-D with t-SNE. MATTR (window 50) measures
the lexical diversity of instructions and responses. Duplicate rates say how much of
each source repeats itself: exactly, by ROUGE-L and by embedding cosine, in the
dataset and, for the generated sources, before the filter removed them.

Costs stay bounded on large datasets: at most `sample_per_source` rows of each source
are embedded (a seeded random sample), ROUGE-L duplicate rates run on at most
`rouge_sample_per_source` rows, and the summary says which numbers come from samples.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from herd.dedup import normalize, novelty_keep
from herd.embeddings import embed, embedding_novelty_keep
from herd.rng import rng_for

log = logging.getLogger(__name__)

MATTR_WINDOW = 50
TOP_TERMS = 5
SEED_GROUP = "seed"
DEFAULTS = {  # the schema's defaults, for callers that pass a partial cfg
    "embedding_model": "all-minilm-l6-v2",
    "clusters": 8,
    "sample_per_source": 2000,
    "rouge_sample_per_source": 50000,
    "duplicate_rouge_threshold": 0.7,
    "duplicate_embedding_threshold": 0.9,
}


def mattr(tokens: list[str], window: int = MATTR_WINDOW) -> float:
    """Moving-average type-token ratio; plain TTR when the text is shorter than the window."""
    if not tokens:
        return 0.0
    if len(tokens) <= window:
        return len(set(tokens)) / len(tokens)
    counts = Counter(tokens[:window])
    total = len(counts) / window
    for i in range(window, len(tokens)):
        out, new = tokens[i - window], tokens[i]
        counts[out] -= 1
        if counts[out] == 0:
            del counts[out]
        counts[new] += 1
        total += len(counts) / window
    return total / (len(tokens) - window + 1)


def words(texts: list[str]) -> list[str]:
    return [w for t in texts for w in t.lower().split()]


def cluster(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(vectors)))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors)


def top_terms(texts: list[str], labels: np.ndarray, n: int = TOP_TERMS) -> dict[int, list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english", min_df=1)
    try:
        matrix = vec.fit_transform(texts)
    except ValueError:  # only stop words
        return {int(c): [] for c in set(labels)}
    vocab = np.array(vec.get_feature_names_out())
    out = {}
    for c in sorted(set(labels)):
        mean = np.asarray(matrix[labels == c].mean(axis=0)).ravel()
        out[int(c)] = vocab[np.argsort(-mean)[:n]].tolist()
    return out


def project_2d(vectors: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    if len(vectors) < 4:
        return np.pad(vectors[:, :2], ((0, 0), (0, max(0, 2 - vectors.shape[1]))))
    perplexity = float(min(30, max(2, (len(vectors) - 1) // 3)))
    return TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(vectors)


def mean_pairwise_cosine(vectors: np.ndarray) -> float | None:
    """Mean cosine over distinct pairs of normalised vectors, in O(n d):
    sum over i != j of v_i . v_j = |sum v|^2 - sum |v_i|^2."""
    n = len(vectors)
    if n < 2:
        return None
    total = vectors.astype(np.float64).sum(axis=0)
    self_sims = float(np.einsum("ij,ij->", vectors, vectors, dtype=np.float64))
    return (float(total @ total) - self_sims) / (n * (n - 1))


def sample_indices(n: int, cap: int | None, seed: int, *parts) -> list[int]:
    """All of range(n), or a seeded random `cap` of them in order."""
    if cap is None or n <= cap:
        return list(range(n))
    return sorted(rng_for(seed, "diversity", *parts).sample(range(n), cap))


def duplicate_rates(texts: list[str], *, rouge_threshold: float, rouge_cap: int | None, seed: int, name: str,
                    vectors: np.ndarray | None = None, embedding_threshold: float | None = None,
                    embedding_sampled: bool = False) -> dict:
    """Exact, ROUGE-L and embedding duplicate rates of one group of texts (in order).

    exact: share of texts whose normalised form (lowercase, whitespace collapsed) repeats
    an earlier one. rouge / embedding: share that the sequential novelty filter (herd.filters,
    no seed references) drops within the group: F1 > rouge_threshold, or cosine >
    embedding_threshold with an earlier kept text (so each includes the exact repeats).
    `vectors` are the embeddings of the group's embedded sample."""
    n = len(texts)
    out: dict = {"n": n}
    if not n:
        return out
    distinct = len({normalize(t) for t in texts})
    out["exact_duplicates"] = n - distinct
    out["exact_duplicate_rate"] = round((n - distinct) / n, 4)
    idx = sample_indices(n, rouge_cap, seed, "rouge", name)
    keep = novelty_keep([texts[i] for i in idx], [], rouge_threshold)
    out["rouge_n"] = len(idx)
    out["rouge_sampled"] = len(idx) < n
    out["rouge_duplicate_rate"] = round(1 - sum(keep) / len(idx), 4)
    if vectors is not None and embedding_threshold is not None and len(vectors):
        keep = embedding_novelty_keep(vectors, embedding_threshold)
        out["embedding_n"] = len(vectors)
        out["embedding_sampled"] = embedding_sampled
        out["embedding_duplicate_rate"] = round(1 - float(keep.mean()), 4)
    return out


def source_kinds(seed_tasks: list[dict]) -> dict[str, str]:
    """How each instruction_source came about, for the map's legend and the summary."""
    from herd.prompts import SOURCE_LABEL

    kinds = {SOURCE_LABEL["example"]: "example-guided", SOURCE_LABEL["topic"]: "topic-guided",
             SEED_GROUP: "seed tasks (examples)"}
    for spec in seed_tasks:
        if spec.get("use", "examples") != "examples":
            kinds.setdefault(spec.get("source", "?"), spec["use"])
    return kinds


MARKERS = {"seed tasks (examples)": "*", "reanswer": "^", "passthrough": "s"}


def plot(points: np.ndarray, groups: list[str], totals: dict[str, int], kinds: dict[str, str],
         path: Path, title: str) -> None:
    """Scatter of the 2-D points, one colour and legend entry per group (the seeds in
    black stars, drawn last), with shown / total counts in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups_arr = np.array(groups, dtype=object)
    names = [g for g in sorted(set(groups)) if g != SEED_GROUP] + ([SEED_GROUP] if SEED_GROUP in groups else [])
    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(10, 7), dpi=130)
    for i, name in enumerate(names):
        mask = groups_arr == name
        shown, total = int(mask.sum()), totals.get(name, int(mask.sum()))
        kind = kinds.get(name)
        count = f"{shown}" if shown == total else f"{shown} of {total}"
        label = f"{name}{f' - {kind}' if kind and kind != name else ''} ({count})"
        seed = name == SEED_GROUP
        ax.scatter(points[mask, 0], points[mask, 1], label=label,
                   s=60 if seed else 14, alpha=0.9 if seed else 0.6,
                   marker=MARKERS.get(kind, "o"), c="black" if seed else [colours[i % len(colours)]],
                   edgecolors="white" if seed else "none", linewidths=0.4, zorder=3 if seed else 2)
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="instruction_source",
              title_fontsize=9, markerscale=1.4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", bbox_inches="tight")
    plt.close(fig)


def _by_source(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: str(r.get("id", ""))):
        groups.setdefault(row["instruction_source"], []).append(row)
    return dict(sorted(groups.items()))


def filter_summary(stats: dict | None, generated: list[dict] | None) -> dict | None:
    """The filter stage's counts (stats.json) and, from its records, input, kept and drops
    per reason for each source."""
    if stats is None and generated is None:
        return None
    out = {k: stats[k] for k in ("input", "kept", "dropped", "dropped_by_reason") if k in stats} if stats else {}
    if generated is not None:
        per_source: dict[str, dict] = {}
        for rec in generated:
            entry = per_source.setdefault(rec["instruction_source"], {"input": 0, "kept": 0, "dropped_by_reason": Counter()})
            entry["input"] += 1
            if rec.get("reason"):
                entry["dropped_by_reason"][rec["reason"]] += 1
            else:
                entry["kept"] += 1
        out["per_source"] = {src: {**e, "dropped_by_reason": dict(sorted(e["dropped_by_reason"].items())),
                                   "keep_rate": round(e["kept"] / e["input"], 4)}
                             for src, e in sorted(per_source.items())}
    return out


class Embedded(NamedTuple):
    """The embedded sample of every group, keyed by (stage, group): stage is "dataset" (the
    dataset's sources and the seeds) or "generated" (the sources before the filter)."""
    texts: dict[tuple[str, str], list[str]]
    vectors: dict[tuple[str, str], np.ndarray]
    unique: int  # distinct texts embedded
    dim: int
    seconds: float


def _embed_samples(groups: dict[str, list[str]], pre: dict[str, list[str]] | None, cfg: dict,
                   seed: int) -> Embedded:
    """Embed a seeded sample of each group (dataset sources, seeds, pre-filter sources), each
    distinct text once."""
    cap = cfg["sample_per_source"]
    picks = {("dataset", g): sample_indices(len(texts), cap, seed, "embed", "dataset", g) for g, texts in groups.items()}
    if pre is not None and cfg["duplicate_embedding_threshold"] is not None:
        picks.update({("generated", g): sample_indices(len(texts), cap, seed, "embed", "generated", g)
                      for g, texts in pre.items()})
    texts_of = {key: [(groups if key[0] == "dataset" else pre)[key[1]][i] for i in idx] for key, idx in picks.items()}
    unique = list(dict.fromkeys(t for texts in texts_of.values() for t in texts))
    t0 = time.perf_counter()
    table = embed(unique, cfg["embedding_model"], seed) if unique else np.zeros((0, 384), np.float32)
    seconds = time.perf_counter() - t0
    row_of = {t: i for i, t in enumerate(unique)}
    vectors = {key: table[[row_of[t] for t in texts]].reshape(len(texts), -1) for key, texts in texts_of.items()}
    return Embedded(texts_of, vectors, len(unique), table.shape[1], seconds)


def _clusters(emb: Embedded, sources: list[str], k: int, seed: int) -> list[dict]:
    """k-means over the embedded dataset instructions (seeds apart): size and top terms of each."""
    keys = [("dataset", g) for g in sources]
    vectors = np.concatenate([emb.vectors[key] for key in keys]) if keys else np.zeros((0, emb.dim))
    texts = [t for key in keys for t in emb.texts[key]]
    labels = cluster(vectors, k, seed) if len(texts) else np.array([], dtype=int)
    terms = top_terms(texts, labels) if len(texts) else {}
    sizes = Counter(int(c) for c in labels)
    return [{"cluster": c, "size": sizes[c], "top_terms": terms.get(c, [])} for c in sorted(sizes)]


def _draw_map(emb: Embedded, groups: dict[str, list[str]], kinds: dict[str, str], cfg: dict, seed: int,
              path: Path) -> dict:
    """The t-SNE map of the embedded dataset instructions with the seeds; what it shows."""
    map_keys = [("dataset", g) for g in groups if g != SEED_GROUP] + [("dataset", SEED_GROUP)]
    map_groups = [key[1] for key in map_keys for _ in emb.texts[key]]
    totals = {g: len(texts) for g, texts in groups.items()}
    points = project_2d(np.concatenate([emb.vectors[key] for key in map_keys]), seed)
    sampled = any(len(emb.texts[("dataset", g)]) < totals[g] for g in groups)
    plot(points, map_groups, totals, kinds, path,
         f"Instructions by source and the seed tasks: t-SNE of {cfg['embedding_model']} embeddings\n"
         f"{len(map_groups)} points"
         + (f" (at most {cfg['sample_per_source']} per source, sampled at random)" if sampled else ""))
    return {"points": len(map_groups), "per_group": dict(Counter(map_groups)), "sampled": sampled}


def _per_source(groups: dict[str, list[str]], dataset: dict[str, list[dict]],
                vectors: dict[tuple[str, str], np.ndarray], kinds: dict[str, str]) -> dict:
    """Size, kind, MATTR and mean pairwise cosine of each group."""
    per_source = {}
    for g, texts in groups.items():
        v = vectors[("dataset", g)]
        entry = {"n": len(texts), "n_embedded": len(v), "kind": kinds.get(g, "unknown"),
                 "mattr_instructions": round(mattr(words(texts)), 4)}
        if g != SEED_GROUP:
            entry["mattr_responses"] = round(mattr(words([r["response"] for r in dataset[g]])), 4)
        mean_cos = mean_pairwise_cosine(v)
        if mean_cos is not None:
            entry["mean_pairwise_cosine"] = round(mean_cos, 4)
        per_source[g] = entry
    return per_source


DUPLICATE_NOTES = (
    ("dataset: the rows after filtering and answering. The filter already removed exact and ROUGE-L "
     "duplicates of the generated sources (against the seeds too), so their dataset rates are about 0 by "
     "construction; they measure the unfiltered sources (reanswer, passthrough), repeats across sources "
     "('all'), and, by embeddings, paraphrases that ROUGE-L does not catch."),
    ("generated_before_filter: every generated instruction (the filter's kept and excluded records), "
     "i.e. how much the teacher repeated itself; the filter's counts per reason are under 'filter'."),
    ("Rates from samples (rouge_sampled / embedding_sampled true) count only duplicates whose partner "
     "is in the sample, so they underestimate the full group's rate."),
)


def _duplicate_definitions(cfg: dict) -> dict[str, str]:
    return {
        "exact_duplicate_rate": "share of a group's instructions whose normalised text (lowercase, "
                                "whitespace collapsed) repeats an earlier one",
        "rouge_duplicate_rate": f"share dropped by a sequential ROUGE-L F1 > {cfg['duplicate_rouge_threshold']} "
                                "filter within the group (herd.dedup.RougeNovelty, no seed references; "
                                "includes exact repeats)",
        "embedding_duplicate_rate": f"share dropped by a sequential cosine > {cfg['duplicate_embedding_threshold']} "
                                    f"filter over {cfg['embedding_model']} embeddings within the group (includes "
                                    "exact repeats)",
        "all": "every source together: repeats across sources count too",
    }


def _group_rates(group_texts: dict[str, list[str]], stage: str, with_all: bool,
                 vectors: dict[tuple[str, str], np.ndarray], cfg: dict, seed: int) -> dict:
    """duplicate_rates of each group of one stage and, with `with_all`, of all of them together."""
    emb_threshold = cfg["duplicate_embedding_threshold"]
    rouge = {"rouge_threshold": cfg["duplicate_rouge_threshold"], "rouge_cap": cfg["rouge_sample_per_source"],
             "seed": seed}
    out = {}
    for g, texts in group_texts.items():
        v = vectors.get((stage, g))
        out[g] = duplicate_rates(texts, name=f"{stage}/{g}", vectors=v, embedding_threshold=emb_threshold,
                                 embedding_sampled=v is not None and len(v) < len(texts), **rouge)
    if with_all and len(group_texts) > 1:  # across sources: a row repeating another source's
        keys = [(stage, g) for g in group_texts if (stage, g) in vectors]
        all_texts = [t for texts in group_texts.values() for t in texts]
        all_v = np.concatenate([vectors[k] for k in keys]) if keys and emb_threshold is not None else None
        out["all"] = duplicate_rates(all_texts, name=f"{stage}/all", vectors=all_v,
                                     embedding_threshold=emb_threshold,
                                     embedding_sampled=all_v is not None and len(all_v) < len(all_texts), **rouge)
    return out


def _duplicates(groups: dict[str, list[str]], pre: dict[str, list[str]] | None,
                vectors: dict[tuple[str, str], np.ndarray], cfg: dict, seed: int,
                generated: list[dict] | None, filter_stats: dict | None) -> dict:
    """Duplicate rates of the dataset, the seeds and the generated sources before the filter,
    with the filter's drops and what each number means."""
    dataset_groups = {g: t for g, t in groups.items() if g != SEED_GROUP}
    return {
        "definitions": _duplicate_definitions(cfg),
        "dataset": _group_rates(dataset_groups, "dataset", True, vectors, cfg, seed),
        "seed": _group_rates({SEED_GROUP: groups[SEED_GROUP]}, "dataset", False, vectors, cfg, seed)[SEED_GROUP],
        "generated_before_filter": (_group_rates(pre, "generated", True, vectors, cfg, seed)
                                    if pre is not None else None),
        "filter": filter_summary(filter_stats, generated),
        "notes": list(DUPLICATE_NOTES),
    }


def report(rows: list[dict], seeds: list[str], cfg: dict, seed: int, plot_path: Path, *,
           generated: list[dict] | None = None, filter_stats: dict | None = None,
           kinds: dict[str, str] | None = None) -> dict:
    """Embed, cluster, plot and measure; return the summary.

    rows: the dataset (instruction, response, instruction_source, id); seeds: the seed
    instructions shown to the teacher; generated: every generated instruction before the
    filter (its kept and excluded records, the excluded with their `reason`), for
    pre-filter duplicate rates; filter_stats: the filter's stats.json."""
    started = time.perf_counter()
    cfg = {**DEFAULTS, **cfg}
    kinds = {SEED_GROUP: "seed tasks (examples)", **(kinds or {})}
    dataset = _by_source(rows)
    groups = {**{src: [r["instruction"] for r in part] for src, part in dataset.items()}, SEED_GROUP: list(seeds)}
    pre = None
    if generated is not None:
        pre = {src: [r["instruction"].strip() for r in part] for src, part in _by_source(generated).items()}

    emb = _embed_samples(groups, pre, cfg, seed)
    clusters = _clusters(emb, [g for g in groups if g != SEED_GROUP], cfg["clusters"], seed)
    map_summary = _draw_map(emb, groups, kinds, cfg, seed, plot_path)
    per_source = _per_source(groups, dataset, emb.vectors, kinds)
    summary = {
        "instructions": len(rows),
        "seeds": len(seeds),
        "per_source": per_source,
        "clusters": clusters,
        "duplicates": _duplicates(groups, pre, emb.vectors, cfg, seed, generated, filter_stats),
        "map": map_summary,
        "sampling": {"sample_per_source": cfg["sample_per_source"],
                     "rouge_sample_per_source": cfg["rouge_sample_per_source"], "embedded_texts": emb.unique,
                     "seed": seed},
        "embedding_model": cfg["embedding_model"],
        "mattr_window": MATTR_WINDOW,
    }
    log.info("diversity: %d instructions, %d seeds, %d texts embedded in %.1fs, %d clusters, per source %s, %.1fs",
             len(rows), len(seeds), emb.unique, emb.seconds, len(clusters),
             {s: e["n"] for s, e in per_source.items()}, time.perf_counter() - started)
    return summary

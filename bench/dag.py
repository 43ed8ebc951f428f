"""No-op rebuild time of herd's paper-scale DAG against a bare Snakefile of the same shape.

"No-op rebuild": every output exists, is newer than its inputs and has its metadata
(params, code) recorded, so `snakemake -n` finds nothing to do; the time is all DAG
building and up-to-date checks. Both workflows are brought to that state the same way:
their outputs are created as empty files (or directories), then `snakemake --touch
--forceall` touches them in dependency order and records their metadata. The bare
Snakefile has herd's job count in the same shape: N independent shard jobs feeding an
aggregate, N more feeding another aggregate, per-model jobs after it, one final table.

    python bench/dag.py                                  # config/paper.yaml, 3 timed runs each
    python bench/dag.py --configfile config/tiny.yaml --repeat 5 --keep /tmp/dagbench

Prints the job count, the wall and CPU time of each no-op run, and the ratio herd / bare
(goal <= 2). A second bare Snakefile, whose shard jobs write herd's files (three outputs, a
log and a benchmark each), separates what herd's file layout costs from its own overhead.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["Snakefile", "config.yaml", "rules", "scripts", "config", "profiles", "envs", "src"]
TARGET = "results/eval.csv"


# The slurm executor plugin, when installed, runs `scontrol show config` as it is imported,
# in every snakemake call: about 9 s where SLURM's tools exist but no controller answers.
# A stand-in scontrol that fails at once keeps that fixed cost out of both timings.
SHIM = Path(tempfile.mkdtemp(prefix="herd-dagbench-shim-"))
(SHIM / "scontrol").write_text("#!/bin/sh\nexit 1\n")
(SHIM / "scontrol").chmod(0o755)


def snakemake(workdir: Path, *args: str, no_touch_sleep: bool = False) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; `no_touch_sleep` drops the touch executor's 0.1 s pause
    per job (it guards file systems with coarse mtimes; jobs are still touched in order)."""
    code = ("import sys, snakemake.executors.touch as t; t.Executor.SLEEPING_TIME = 0; "
            "from snakemake.cli import main; sys.argv = ['snakemake'] + sys.argv[1:]; main()"
            if no_touch_sleep else "import sys; from snakemake.cli import main; sys.argv = ['snakemake'] + sys.argv[1:]; main()")
    env = {**os.environ, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY") or "dummy",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": f"{SHIM}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-c", code, "--cores", "2", *args], check=False, cwd=workdir,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed in {workdir}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_outputs(workdir: Path, *args: str) -> list[str]:
    """Output paths of every job of a dry run, from its job listing."""
    proc = snakemake(workdir, "-n", *args)
    outputs = []
    for line in proc.stdout.splitlines():
        m = re.match(r"\s+output: (.*)$", line)
        if m:
            outputs.extend(p.strip() for p in m.group(1).split(", "))
    return outputs


def directory_patterns(workdir: Path) -> list[re.Pattern]:
    """Regexes of the outputs declared as directory(...) in the rules."""
    pats = []
    for smk in [workdir / "Snakefile", *sorted((workdir / "rules").glob("*.smk"))]:
        for pattern in re.findall(r'directory\(\s*"([^"]+)"', smk.read_text()):
            pats.append(re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(pattern)) + "$"))
    return pats


def bring_up_to_date(workdir: Path, *args: str) -> int:
    """Create every planned output, then touch them in order and record their metadata."""
    outputs = planned_outputs(workdir, *args)
    dirs = directory_patterns(workdir)
    for out in outputs:
        path = workdir / out
        if any(p.match(out) for p in dirs):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    snakemake(workdir, "--touch", "--forceall", *args, no_touch_sleep=True)
    left = snakemake(workdir, "-n", *args)
    if "Nothing to be done" not in left.stdout + left.stderr:
        raise SystemExit(f"{workdir}: not a no-op after touching:\n{left.stdout[-3000:]}")
    return len(set(outputs))


def time_noop(workdir: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, of snakemake's process) of one no-op dry run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    snakemake(workdir, "-n", *args)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def job_counts(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule of a fresh dry run (the 'Job stats' table)."""
    proc = snakemake(workdir, "-n", *args)
    counts, in_table = {}, False
    for line in proc.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
    return counts


def bare_snakefile(n_a: int, n_b: int, n_m: int, herd_files: bool) -> str:
    """A Snakefile without logic: n_a shard jobs -> aggregate -> n_b shard jobs -> aggregate ->
    n_m per-model jobs -> final. With `herd_files`, each shard job also writes herd's three
    outputs (records, stats, ledger), a log and a benchmark, as herd's shard rules do."""
    def shard(name: str, folder: str, inp: str) -> str:
        out = f'"results/{folder}/{{i}}.jsonl"'
        extra = ""
        if herd_files:
            out = (f'records="results/{folder}/{{i}}.jsonl", stats="results/{folder}/{{i}}.stats.json", '
                   f'ledger="results/{folder}/{{i}}.ledger.jsonl"')
            extra = (f'    log: "logs/{folder}/{{i}}.log"\n'
                     f'    benchmark: "benchmarks/{folder}/{{i}}.tsv"\n')
        return (f"rule {name}:\n" + (f'    input: "{inp}"\n' if inp else "") + f"    output: {out}\n" + extra
                + '    shell: "touch {output}"\n\n')

    return (f"# generated by bench/dag.py: {n_a + n_b + n_m + 3} jobs of the shape of herd's DAG, no logic\n"
            'rule all:\n    input: "results/final.txt"\n\n'
            + shard("shard_a", "a", "")
            + f'rule aggregate_a:\n    input: expand("results/a/{{i}}.jsonl", i=range({n_a}))\n'
              '    output: "results/aggregate_a.txt"\n    shell: "touch {output}"\n\n'
            + shard("shard_b", "b", "results/aggregate_a.txt")
            + f'rule aggregate_b:\n    input: expand("results/b/{{i}}.jsonl", i=range({n_b}))\n'
              '    output: "results/aggregate_b.txt"\n    shell: "touch {output}"\n\n'
              'rule per_model:\n    input: "results/aggregate_b.txt"\n    output: "results/models/{m}.txt"\n'
              '    shell: "touch {output}"\n\n'
            + f'rule final:\n    input: expand("results/models/{{m}}.txt", m=range({n_m}))\n'
              '    output: "results/final.txt"\n    shell: "touch {output}"\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", default="config/paper.yaml")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build in this (new) folder and keep it")
    args = ap.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="herd-dagbench-"))
    base.mkdir(parents=True, exist_ok=True)
    herd = base / "herd"
    bares = {"bare": base / "bare", "bare+files": base / "bare-files"}
    for d in (herd, *bares.values()):
        if d.exists():
            shutil.rmtree(d)
    herd.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, herd / name)
    shared = ROOT.parent / "shared"
    if shared.exists() and not (base / "shared").exists():
        (base / "shared").symlink_to(shared)
    runs = {"herd": (herd, (TARGET, "--configfile", args.configfile))}

    counts = job_counts(herd, *runs["herd"][1])
    total = sum(counts.values())
    n_a, n_b = counts.get("instructions", 0), counts.get("responses", 0)
    n_m = max(1, total - n_a - n_b - 3)  # aggregate_a, aggregate_b, final
    for name, d in bares.items():
        d.mkdir()
        (d / "Snakefile").write_text(bare_snakefile(n_a, n_b, n_m, herd_files=name != "bare"))
        runs[name] = (d, ("results/final.txt",))

    for name, (d, targets) in runs.items():
        start = time.perf_counter()
        n_out = bring_up_to_date(d, *targets)
        jobs = total if name == "herd" else n_a + n_b + n_m + 3
        print(f"{name:<11} {jobs} jobs, {n_out} outputs, brought up to date in {time.perf_counter() - start:.0f} s")

    times = {name: [] for name in runs}
    for _ in range(args.repeat):  # interleaved, so that a change in the machine's load hits all alike
        for name, (d, targets) in runs.items():
            times[name].append(time_noop(d, *targets))
    med = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in times.items()}
    for name, t in times.items():
        print(f"no-op `snakemake -n` {name:<11} wall {', '.join(f'{w:.2f}' for w, _ in t)} s "
              f"(median {med[name][0]:.2f}); CPU median {med[name][1]:.2f} s")
    for ref in bares:
        print(f"ratio herd / {ref:<11} wall {med['herd'][0] / med[ref][0]:.2f}, CPU {med['herd'][1] / med[ref][1]:.2f}"
              + (" (goal <= 2)" if ref == "bare" else " (same files per shard job: herd's own overhead)"))
    if not args.keep:
        shutil.rmtree(base)
    shutil.rmtree(SHIM)


if __name__ == "__main__":
    main()

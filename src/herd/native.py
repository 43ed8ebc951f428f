"""Native kernels that may not run on this host: try them in a child process, choose, explain.

A CPU can advertise instructions that the machine does not execute: in a VM whose CPUID
reports AMX, llama.cpp's AMX kernels (one of its "extra buffer types", chosen for
multi-token batches) die with SIGILL although a one-token decode works. A SIGILL kills
the process; no Python code can catch it. So before a job loads a model for real, a child
process loads it the same way and decodes a multi-token batch. If the child dies of a
signal, the job knows before it has anything to lose: it falls back to the plain kernels,
or stops with an error that says what happened and what to do. The verdict is kept on
disk per host, library build and model, so each combination is tried once.

`teacher.cpu_kernels` chooses: `auto` (the fast kernels where they run, else the plain
ones), `fast` (llama.cpp's extra buffer types: AMX, repacked weights) or `safe` (without
them). Every job log also gets a Python traceback on a fatal signal (herd.logs), and the
workflow's error handler turns such a crash into advice (`crash_advice`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

KERNELS = ("auto", "fast", "safe")
PROBE_TIMEOUT_S = 300
REBUILD = (
    "CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF "
    "-DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF\" pip install --force-reinstall --no-cache-dir "
    "--no-deps llama-cpp-python"
)
_patch_lock = threading.Lock()


class NativeCrash(RuntimeError):
    """A native library died (or would die) of a signal on this host."""


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def signal(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """The CPU's model name and the feature flags it advertises (Linux; empty elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor(), set()
    name, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return name, flags


def advertised_amx(flags: set[str]) -> bool:
    return any(f.startswith("amx") for f in flags)


def llamacpp_build() -> dict:
    """What the installed llama-cpp-python is: version, the features it was built with, its library."""
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib"
    libs = sorted(lib.glob("*.so*")) if lib.is_dir() else []
    return {
        "version": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "libraries": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in libs],
    }


def host_fingerprint() -> dict:
    name, flags = cpu_flags()
    return {"cpu": name, "flags": sorted(flags), "machine": platform.machine(), "kernel": platform.release()}


@contextlib.contextmanager
def _model_params(use_extra_bufts: bool):
    """llama_cpp.Llama has no argument for `use_extra_bufts`: hand it default model params
    with the field set, for the duration of one constructor call."""
    import llama_cpp.llama as llama_mod

    if use_extra_bufts:
        yield
        return
    lc = llama_mod.llama_cpp
    original = lc.llama_model_default_params

    def defaults():
        params = original()
        params.use_extra_bufts = False
        return params

    with _patch_lock:
        lc.llama_model_default_params = defaults
        try:
            yield
        finally:
            lc.llama_model_default_params = original


def load_llama(path: str | Path, kernels: str, *, n_ctx: int, threads: int, **options):
    """A llama_cpp.Llama on `path` with the chosen kernels ("fast" or "safe"); `options` go to
    Llama as they are (e.g. logits_all for scoring)."""
    from llama_cpp import Llama

    if kernels not in ("fast", "safe"):
        raise ValueError(f"kernels must be fast or safe, not {kernels!r} (choose with llamacpp_kernels)")
    with _model_params(use_extra_bufts=kernels == "fast"):
        return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False, **options)


def run_child(cmd: list[str], timeout: float = PROBE_TIMEOUT_S) -> ChildResult:
    """A child process (never multiprocessing: a Snakemake script's main module must not be
    imported again), with herd importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1]),
                                                                    os.environ.get("PYTHONPATH")] if p)}
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        return ChildResult(124, f"no result within {timeout:g} s: {(exc.stderr or '')[-2000:]}")
    return ChildResult(proc.returncode, (proc.stdout + proc.stderr)[-4000:])


def _verdict_path(cache_dir: str | Path, model: Path, kernels: str) -> Path:
    st = model.stat()
    ident = {"host": host_fingerprint(), "build": llamacpp_build(), "kernels": kernels,
             "model": [str(model.resolve()), st.st_size, int(st.st_mtime)]}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / "native" / f"llamacpp-{digest}.json"


def _tried(cache_dir, model: Path, kernels: str, threads: int, probe) -> ChildResult:
    """The probe's verdict for these kernels on this host, build and model: from disk or run now."""
    path = _verdict_path(cache_dir, model, kernels)
    if path.is_file():
        data = json.loads(path.read_text())
        return ChildResult(data["returncode"], data["output"])
    log.info("trying llama.cpp's %s kernels on this host in a child process (once per host, build and model)",
             kernels)
    result = run_child(probe(str(model), kernels, threads))
    if result.ok or result.signal:  # a verdict about the host; other failures are not kept
        from herd.io import write_json

        write_json(path, {"returncode": result.returncode, "output": result.output, "kernels": kernels})
    return result


def probe_command(model: str, kernels: str, threads: int) -> list[str]:
    """The child that tries `kernels`: `python -m herd.teacher.llamacpp_probe MODEL KERNELS THREADS`."""
    return [sys.executable, "-X", "faulthandler", "-m", "herd.teacher.llamacpp_probe", model, kernels, str(threads)]


def llamacpp_kernels(model: str | Path, setting: str, cache_dir: str | Path, threads: int,
                     probe=probe_command) -> str:
    """The kernels a llama.cpp job uses on this host: "fast" or "safe" (see the module doc).

    `probe` builds the child's command from (model, kernels, threads)."""
    if setting not in KERNELS:
        raise ValueError(f"teacher.cpu_kernels: {setting!r} is not one of {KERNELS}")
    model = Path(model)
    first = "safe" if setting == "safe" else "fast"
    result = _tried(cache_dir, model, first, threads, probe)
    if result.ok:
        return first
    if not result.signal:
        raise RuntimeError(f"llama.cpp could not load or run {model} ({first} kernels): {result.output[-1500:]}")
    if setting == "auto":
        log.warning("llama.cpp's fast CPU kernels (AMX, repacked weights) died with %s on this host (%s); "
                    "using the plain kernels (teacher.cpu_kernels: safe). %s",
                    result.signal, cpu_flags()[0] or "unknown CPU", _amx_note())
        safe = _tried(cache_dir, model, "safe", threads, probe)
        if safe.ok:
            return "safe"
        if not safe.signal:
            raise RuntimeError(f"llama.cpp could not load or run {model} (safe kernels): {safe.output[-1500:]}")
        result, first = safe, "safe"
    raise NativeCrash(crash_message("llama.cpp", result.signal, first, setting))


def _amx_note() -> str:
    return ("The CPU advertises AMX, which some virtual machines do not execute." if advertised_amx(cpu_flags()[1])
            else "")


def crash_message(library: str, sig: str | None, kernels: str | None = None, setting: str | None = None) -> str:
    """What happened and what to try, for a native library that died of a signal."""
    cpu, flags = cpu_flags()
    what = (f"{library} died with {sig or 'a fatal signal'} on this host ({cpu or 'unknown CPU'}"
            f"{', which advertises AMX' if advertised_amx(flags) else ''})")
    if library == "llama.cpp":
        tried = f" with its {kernels} CPU kernels" if kernels else ""
        advice = []
        if kernels != "safe":
            choice = "auto or safe" if setting == "fast" else "safe"
            advice.append(f"set teacher.cpu_kernels: {choice}, which keeps llama.cpp off its AMX and "
                          "weight-repacking kernels")
        advice.append("the installed llama-cpp-python was compiled for another CPU (pip caches a wheel built "
                      "with -march=native and reuses it on other hosts); rebuild it on this host without "
                      f"native flags: {REBUILD}")
        advice.append("or use another teacher backend (teacher.backend: transformers, or openai against a server "
                      "on a host where llama.cpp runs)")
        return f"{what}{tried}. Its code uses CPU instructions that this machine does not execute. Try: " + \
            "; ".join(advice) + ". See README.md, Troubleshooting."
    if library == "onnxruntime":
        return (f"{what}. Its int8 kernels use CPU instructions that this machine does not execute. Try: "
                "leave onnx-int8 out of eval.variants on this host, or run the eval jobs on another host. "
                "See README.md, Troubleshooting.")
    return (f"{what}. Native code used CPU instructions that this machine does not execute; "
            "run the job on another host and report the job log. See README.md, Troubleshooting.")


# Python frames that tell which library a crash came from, as faulthandler prints them
_LIBRARY_FRAMES = (("llama_cpp", "llama.cpp"), ("llamacpp_parallel", "llama.cpp"), ("llamacpp_probe", "llama.cpp"),
                   ("onnxruntime", "onnxruntime"), ("torch", "PyTorch"))
_KERNELS_LOGGED = re.compile(r"llama\.cpp: (fast|safe) kernels")
_FATAL = {"Illegal instruction": "SIGILL", "Segmentation fault": "SIGSEGV", "Bus error": "SIGBUS",
          "Floating-point exception": "SIGFPE", "Aborted": "SIGABRT"}


def crash_advice(log_paths) -> list[str]:
    """For each job log that ends in a fatal signal (faulthandler's report): the log, and advice."""
    out = []
    for path in log_paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        marker = text.rfind("Fatal Python error: ")
        if marker < 0:
            continue
        report = text[marker:]
        sig = next((s for name, s in _FATAL.items() if report.startswith(f"Fatal Python error: {name}")), None)
        library = next((lib for frame, lib in _LIBRARY_FRAMES if frame in report), "native code")
        used = _KERNELS_LOGGED.findall(text)  # the teacher logs the kernels it loaded
        out.append(f"{path}: {crash_message(library, sig, used[-1] if used else None)}")
    return out


def probe_onnxruntime_int8() -> None:
    """What an int8 student runs, small: dynamically quantized activations (uint8) times int8
    weights, MatMulInteger over a 64-row batch: the kernel onnxruntime dispatches to AMX on a
    CPU that advertises it and lets the process use it."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.integers(-127, 128, (256, 256), dtype=np.int8), "w")
    zero = numpy_helper.from_array(np.zeros((), dtype=np.int8), "w_zero")
    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "x_scale", "x_zero"]),
         helper.make_node("MatMulInteger", ["xq", "w", "x_zero", "w_zero"], ["y"])],
        "int8_probe", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [64, 256])], [weights, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    session.run(None, {"x": rng.standard_normal((64, 256)).astype(np.float32)})
    onnx.checker.check_model(model)
    probe_onnxruntime_nbits()


def probe_onnxruntime_nbits() -> None:
    """The weight-only int8/int4 flavours' kernels (herd.quantize): an 8-bit GatherBlockQuantized,
    and MatMulNBits at 8 and 4 bits with int8 activations (accuracy_level 4), over a 64-row batch."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    blocks, nodes = 256 // 32, []
    inits = [numpy_helper.from_array(rng.integers(0, 256, (256, 256), dtype=np.uint8), "table"),
             numpy_helper.from_array(np.full((256, blocks), 0.01, np.float32), "scale"),
             numpy_helper.from_array(np.full((256, blocks), 128, np.uint8), "zero"),
             numpy_helper.from_array(rng.integers(0, 256, (256, blocks, 16), dtype=np.uint8), "w4")]
    nodes.append(helper.make_node("GatherBlockQuantized", ["table", "ids", "scale", "zero"], ["x"],
                                  domain="com.microsoft", gather_axis=0, quantize_axis=1, block_size=32, bits=8))
    nodes.append(helper.make_node("Reshape", ["table", "shape"], ["w8"]))
    inits.append(numpy_helper.from_array(np.array([256, blocks, 32], np.int64), "shape"))
    for bits, w in ((8, "w8"), (4, "w4")):
        nodes.append(helper.make_node("MatMulNBits", ["x", w, "scale"], [f"y{bits}"], domain="com.microsoft",
                                      K=256, N=256, bits=bits, block_size=32, accuracy_level=4))
    graph = helper.make_graph(nodes, "nbits_probe", [helper.make_tensor_value_info("ids", TensorProto.INT64, [64])],
                              [helper.make_tensor_value_info(f"y{b}", TensorProto.FLOAT, [64, 256]) for b in (8, 4)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    session.run(None, {"ids": rng.integers(0, 256, 64, dtype=np.int64)})


def require_onnxruntime_int8() -> None:
    """Stop with advice, instead of dying, where onnxruntime's int8 kernels crash this host."""
    result = run_child([sys.executable, "-X", "faulthandler", "-m", "herd.native", "onnxruntime-int8"])
    if result.signal:
        raise NativeCrash(crash_message("onnxruntime", result.signal))
    if not result.ok:
        raise RuntimeError(f"onnxruntime could not run an int8 matrix product: {result.output[-1500:]}")


def serve(argv: list[str]) -> None:
    """llama.cpp's OpenAI-compatible server (llama_cpp.server) with the kernels this host runs:
    `python -m herd.native serve [--cpu-kernels auto|fast|safe] [--cache-dir DIR] --model M ...`;
    every other argument goes to llama_cpp.server."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m herd.native serve")
    ap.add_argument("--cpu-kernels", choices=KERNELS, default="auto")
    ap.add_argument("--cache-dir", default=".herd-cache")
    ap.add_argument("--model", required=True)
    ap.add_argument("--n_threads", type=int, default=os.cpu_count() or 1)
    ours, rest = ap.parse_known_args(argv)
    kernels = llamacpp_kernels(ours.model, ours.cpu_kernels, ours.cache_dir, ours.n_threads)
    print(f"herd: llama.cpp {kernels} kernels (--cpu-kernels {ours.cpu_kernels})", file=sys.stderr)
    from llama_cpp.server.__main__ import main as server_main

    sys.argv = ["llama_cpp.server", "--model", ours.model, "--n_threads", str(ours.n_threads), *rest]
    with _model_params(use_extra_bufts=kernels == "fast"):  # held for the server's life
        server_main()


def _main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1:])
        return 0
    if argv == ["onnxruntime-int8"]:
        probe_onnxruntime_int8()
    else:
        print("usage: python -m herd.native serve --model M [...] | onnxruntime-int8", file=sys.stderr)
        return 2
    print("probe ok")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))

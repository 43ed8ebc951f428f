"""Native kernels chosen safely at run time (herd.native): a child process tries them first.

A host whose CPU advertises instructions it does not execute (AMX in some VMs) kills
llama.cpp with SIGILL. These tests make real child processes die of SIGILL and check
what herd decides and says; the llama.cpp probe itself runs on the packaged model.
"""
import subprocess
import sys
import textwrap

import pytest

from herd import native

AMX_CPUINFO = textwrap.dedent("""\
    processor	: 0
    vendor_id	: GenuineIntel
    model name	: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
    flags		: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_vnni amx_bf16 avx512_fp16 amx_tile amx_int8
    processor	: 1
    model name	: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
    flags		: fpu vme sse sse2 avx avx2 avx512f
    """)


def test_cpu_flags_read_the_first_processor():
    name, flags = native.cpu_flags(AMX_CPUINFO)
    assert name.startswith("Intel(R) Xeon(R) Platinum 8481C")
    assert {"amx_tile", "amx_int8", "avx2"} <= flags
    assert native.advertised_amx(flags)
    assert not native.advertised_amx(native.cpu_flags("flags : sse avx2 avx512f\n")[1])


def dies_when(crashing: set[str]):
    """A probe command that dies of SIGILL for the given kernels and runs the real probe otherwise."""
    def command(model, kernels, threads):
        if kernels in crashing:
            return [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
        return native.probe_command(model, kernels, threads)
    return command


def fails_if_run(model, kernels, threads):
    return [sys.executable, "-c", "raise SystemExit('the verdict should have come from disk')"]


@pytest.mark.slow
def test_auto_uses_fast_kernels_exactly_where_they_run(smollm2_gguf, tmp_path, caplog):
    """The real fast probe, run here by hand, decides what auto must pick: fast where it runs, safe
    with a warning where it dies (some AMX hosts: SIGSEGV or SIGILL inside llama.cpp's AMX kernels)."""
    fast = native.run_child(native.probe_command(str(smollm2_gguf), "fast", 2))
    expected = "fast" if fast.ok else "safe"
    assert native.llamacpp_kernels(smollm2_gguf, "auto", tmp_path, threads=2) == expected
    if not fast.ok:
        assert f"died with {fast.signal}" in caplog.text and "teacher.cpu_kernels: safe" in caplog.text
    # kept per host, build and model: the next job does not try again
    verdicts = list((tmp_path / "native").glob("llamacpp-*.json"))
    assert len(verdicts) == (1 if fast.ok else 2)
    assert native.llamacpp_kernels(smollm2_gguf, "auto", tmp_path, threads=2, probe=fails_if_run) == expected


@pytest.mark.slow
def test_auto_falls_back_to_safe_kernels_when_fast_ones_die(smollm2_gguf, tmp_path, caplog):
    chosen = native.llamacpp_kernels(smollm2_gguf, "auto", tmp_path, threads=2, probe=dies_when({"fast"}))
    assert chosen == "safe"
    assert "died with SIGILL" in caplog.text and "teacher.cpu_kernels" in caplog.text
    assert native.llamacpp_kernels(smollm2_gguf, "auto", tmp_path, threads=2, probe=fails_if_run) == "safe"
    # and the safe kernels really decode a batch on the packaged model
    llm = native.load_llama(smollm2_gguf, chosen, n_ctx=64, threads=2)
    assert llm.tokenize(b"hello")


def test_fast_kernels_that_die_stop_the_job_with_advice(smollm2_gguf, tmp_path):
    with pytest.raises(native.NativeCrash) as err:
        native.llamacpp_kernels(smollm2_gguf, "fast", tmp_path, threads=2, probe=dies_when({"fast"}))
    text = str(err.value)
    assert "SIGILL" in text and "teacher.cpu_kernels: auto" in text and "pip install --force-reinstall" in text


def test_when_every_kernel_dies_the_error_says_rebuild(smollm2_gguf, tmp_path):
    with pytest.raises(native.NativeCrash) as err:
        native.llamacpp_kernels(smollm2_gguf, "auto", tmp_path, threads=2, probe=dies_when({"fast", "safe"}))
    text = str(err.value)
    assert "safe CPU kernels" in text and "-DGGML_NATIVE=OFF" in text and "Troubleshooting" in text


def test_an_unknown_setting_names_the_key(smollm2_gguf, tmp_path):
    with pytest.raises(ValueError, match="teacher.cpu_kernels"):
        native.llamacpp_kernels(smollm2_gguf, "turbo", tmp_path, threads=2)


def test_a_probe_that_fails_without_a_signal_is_an_error_not_a_verdict(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    with pytest.raises(RuntimeError, match="could not load or run"):
        native.llamacpp_kernels(broken, "auto", tmp_path, threads=2)
    assert not list((tmp_path / "native").glob("*.json"))


@pytest.mark.parametrize("frame, library, advice", [
    ("llama_cpp/llama.py", "llama.cpp", "teacher.cpu_kernels"),
    ("onnxruntime/capi/onnxruntime_inference_collection.py", "onnxruntime", "eval.variants"),
])
def test_a_job_log_that_ends_in_a_fatal_signal_gets_advice(tmp_path, frame, library, advice):
    """The job's log gets faulthandler's report (herd.logs.to_file); the workflow's error
    handler reads it and names the library and what to try."""
    log = tmp_path / "job.log"
    code = textwrap.dedent(f"""
        from herd import logs
        logs.to_file({str(log)!r})
        crash = "import os, signal\\ndef run():\\n    os.kill(os.getpid(), signal.SIGILL)\\n"
        namespace = {{}}
        exec(compile(crash, {frame!r}, "exec"), namespace)
        namespace["run"]()
        """)
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert proc.returncode == -4  # SIGILL
    (advice_line,) = native.crash_advice([log, tmp_path / "missing.log"])
    assert str(log) in advice_line and f"{library} died with SIGILL" in advice_line and advice in advice_line


def test_advice_for_a_teacher_that_died_on_its_safe_kernels_is_to_rebuild(tmp_path):
    log = tmp_path / "job.log"
    report = ("INFO herd.teacher.llamacpp: llama.cpp: {} kernels (teacher.cpu_kernels: auto)\n"
              "Fatal Python error: Illegal instruction\n\nStack (most recent call first):\n"
              '  File "/x/herd/teacher/llamacpp_parallel.py", line 154 in generate\n')
    log.write_text(report.format("fast"))
    (fast,) = native.crash_advice([log])
    assert "teacher.cpu_kernels: safe" in fast and "pip install --force-reinstall" in fast
    log.write_text(report.format("safe"))
    (safe,) = native.crash_advice([log])
    assert "teacher.cpu_kernels" not in safe and "-DGGML_NATIVE=OFF" in safe
    healthy = tmp_path / "ok.log"
    healthy.write_text("all fine\n")
    assert native.crash_advice([healthy]) == []


def test_onnxruntime_int8_kernels_are_tried_in_a_child_first():
    """The int8 product that onnxruntime sends to AMX where a CPU advertises it runs here, in a
    child process (export and eval call this before they load an int8 model)."""
    native.require_onnxruntime_int8()
    result = native.run_child([sys.executable, "-m", "herd.native", "onnxruntime-int8"])
    assert result.ok and "probe ok" in result.output

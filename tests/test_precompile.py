"""Compiling a model's kernels ahead of its first call (``yolov12.precompile``, issue 27).

No drift, on the CPU: the variant set ``precompile.variants`` enumerates (the fused forward's ops
mapped to their kernel families' ``launches`` with an explicit arch, the attention core under a
dry run) equals the variant set of what the recorded launch plan really launches when the run
makes an sm_90 GPU's choices (the public ops, their custom ops, the configuration the launchers
pick at run time, the attention plans) — each launch caught at Triton's own entry point (the
interpreter's ``run``, stubbed: nothing computes), both sides told apart by Triton's JIT binder.
YOLOv12-N at 640, batch 1 and 32, float16 and float32. A variant the enumeration misses would be
compiled serially inside the first forward; one it adds would be compiled for nothing.

``yolov12 compile`` through the real command (a subprocess, a private Triton cache, the newest
Triton, sm_90): exit 0, the variants compiled on two processes (this one and a pool), a second
run compiles none; bad input is one line and exit 2.

The first-call policy of ``FastYOLOv12``: ``compile_workers`` / ``YOLOV12_COMPILE_WORKERS``
checked with a clear error, nothing runs off a GPU or with one worker, a failure to compile ahead
costs one log line and never the forward. On a GPU (skipped here): after ``precompile`` the first
forward compiles nothing (Triton's compile listener), n at batch 1 and 32, float16 and float32.
A compile worker that dies fails its job alone.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from unittest import mock

import pytest
import torch

from yolov12 import precompile as P
from yolov12.fast import optimize
from yolov12.model import YOLOv12
from yolov12_kernels.target import rehearse_gpu
from yolov12_kernels.triton.jit_variants import bind

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def sm90_choices():
    """The run makes an sm_90 GPU's choices on CPU tensors and every Triton launch is caught where
    Triton's interpreter would run it: yields the list of (kernel, args, kwargs) launched. The
    rehearsal (``rehearse_gpu``, the ``gpu_choices`` fixture) makes the path's choices (auto's
    backend, fused convs); the kernels' block configurations, which it leaves at the
    interpreter's, are patched here to the sm_90 ones, and so are the attention's direct-launch
    plans."""
    from triton.runtime.interpreter import InterpretedFunction

    from benchmarks.bench_triton_host import StubKernel
    from yolov12_kernels.triton import conv, dwconv, launch, mlp
    launched = []

    def run(self, *args, grid, warmup, **kwargs):
        launched.append((self, args, kwargs))
        return StubKernel()
    sm90 = lambda device: "sm90"  # noqa: E731
    with rehearse_gpu((9, 0)), mock.patch.object(launch, "INTERPRET", False), \
            mock.patch.object(conv, "interpreter_config", lambda *a: None), \
            mock.patch.object(conv, "arch_class", sm90), \
            mock.patch.object(dwconv, "INTERPRET", False), \
            mock.patch.object(dwconv, "arch_class", sm90), \
            mock.patch.object(mlp, "INTERPRET", False), \
            mock.patch.object(InterpretedFunction, "run", run):
        launch._plans.clear()  # plans built under the patch: the GPU's configurations
        try:
            yield launched
        finally:
            launch._plans.clear()  # no stubbed plan outlives the patch


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
def test_enumerated_variants_are_what_the_recorded_plan_launches(dtype):
    with sm90_choices() as launched:
        # auto's backend as on sm_90; fused_convs=True, since the probe that would choose them
        # runs a conv, which the stubbed launches leave unwritten (it would see wrong values)
        fast = optimize(YOLOv12("n"), "cpu", dtype, fused_convs=True, graphs=False)
        assert fast.attention_backend == "triton" and fast.fused_convs
        for batch in (1, 32):
            enumerated = P.variants("n", 640, batch, dtype, "sm_90")
            launched.clear()
            fast(torch.rand(batch, 3, 640, 640))  # records the launch plan of this shape
            assert len(launched) > 100
            recorded = {bind(kernel, args, kwargs, 90).key for kernel, args, kwargs in launched}
            want = {v.key for v in enumerated}
            assert len(want) == len(enumerated) > 30
            assert recorded == want, (f"batch {batch}: launched, not enumerated: "
                                      f"{_names(recorded - want)}; enumerated, not launched: "
                                      f"{_names(want - recorded)}")


def _names(keys) -> str:
    """A variant key short: its kernel and compile options (the specialisation is long)."""
    return f"{len(keys)}: " + ", ".join(sorted(f"{k[0].split(':')[1]} {k[2]}" for k in keys)[:3])


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------
def _command(args, cache: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "PYTHONPATH")}
    env.update(PYTHONPATH=str(ROOT), TRITON_CACHE_DIR=str(cache), PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "yolov12", "compile", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)


def test_compile_command_compiles_once_and_a_second_run_compiles_nothing(tmp_path):
    args = ["scale=n", "imgsz=64", "batch=1", "arch=sm_90"]
    first = _command([*args, "workers=2"], tmp_path / "cache")
    assert first.returncode == 0, first.stderr[-2000:]
    count = int(first.stdout.split(": ")[2].split()[0])  # "...: 51 kernel variants, ..."
    assert count > 30 and f"{count} compiled, 0 cached" in first.stdout
    assert "on 2 processes" in first.stdout and "compiling" in first.stderr
    assert any(p.suffix == ".cubin" for p in (tmp_path / "cache").rglob("*"))
    second = _command(args, tmp_path / "cache")
    assert second.returncode == 0 and f"0 compiled, {count} cached" in second.stdout
    assert "nothing to compile" in second.stdout and "compiling" not in second.stderr


def test_compile_command_bad_input_is_one_line(tmp_path, capsys):
    r = _command(["scale=n", "arch=sm_75"], tmp_path / "cache")  # the real command
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert r.stderr == ("yolov12 compile: error: arch: expected one of sm_80, sm_86, sm_89, "
                        "sm_90, got 'sm_75'\n")
    from yolov12.__main__ import main  # what the command runs, in this process
    for argv, msg in ((["imgsz=100"], "imgsz: expected a positive multiple of 32"),
                      (["batch=0"], "batch: expected positive integers"),
                      (["workers=-1"], "workers: expected None or a number of processes"),
                      (["batch=x"], "argument --batch: invalid int value: 'x'")):
        with contextlib.suppress(SystemExit):
            assert main(["compile", "arch=sm_90", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("yolov12 compile: error: ") and err.count("\n") == 1, err
        assert msg in err


# ------------------------------------------------------------------------------------------------
# the first call
# ------------------------------------------------------------------------------------------------
def test_compile_workers_argument_and_variable(monkeypatch):
    monkeypatch.delenv(P.WORKERS_ENV, raising=False)
    assert P.compile_workers() == P.usable_cores() and P.compile_workers(0) == 1
    monkeypatch.setenv(P.WORKERS_ENV, "3")
    assert P.compile_workers() == 3 and P.compile_workers(5) == 5
    monkeypatch.setenv(P.WORKERS_ENV, "many")
    with pytest.raises(ValueError, match=P.WORKERS_ENV):
        P.compile_workers()
    with pytest.raises(ValueError, match="compile_workers: expected None or a number"):
        optimize(YOLOv12("n"), "cpu", compile_workers=-1)


def _gpu_model(workers):
    """What ``for_first_call`` reads of a FastYOLOv12 on a GPU."""
    return types.SimpleNamespace(device=torch.device("cuda"), _fused=object(),
                                 compile_workers=workers, dtype=torch.float16,
                                 memory_format=torch.channels_last)


def test_first_call_compiles_ahead_on_a_gpu_only_and_never_fails_the_call(caplog, monkeypatch):
    from yolov12_kernels.triton import launch
    monkeypatch.setattr(launch, "INTERPRET", False)  # as on a GPU
    monkeypatch.setattr(P, "target", lambda arch, device=None: ("sm_90", "sm90", 90))
    x = torch.empty(1, 3, 64, 64)
    with mock.patch.object(P, "launches") as enumerated:
        assert P.for_first_call(_gpu_model(1), x) is None  # one worker: nothing at all
        fast = optimize(YOLOv12("n"), "cpu", torch.float32, compile_workers=4)
        assert fast.compile_workers == 4 and P.for_first_call(fast, x) is None  # a CPU model
    assert not enumerated.called
    seen = []
    with mock.patch.object(P, "launches", lambda *a, **k: seen.append(a) or []), \
            mock.patch.object(P, "compile_variants", lambda *a, **k: ("report", a)):
        assert P.for_first_call(_gpu_model(3), x)[0] == "report"
    assert seen and seen[0][1] == (1, 3, 64, 64) and seen[0][2] == "sm90"
    caplog.set_level(logging.WARNING, "yolov12")
    with mock.patch.object(P, "_logged", set()), \
            mock.patch.object(P, "launches", side_effect=RuntimeError("no memory")):
        assert P.for_first_call(_gpu_model(2), x) is None
    assert "compiling ahead of the first call failed (RuntimeError: no memory)" in caplog.text


def test_a_new_shape_is_compiled_ahead_before_it_is_prepared():
    fast = optimize(YOLOv12("n"), "cpu", torch.float32, backend="sdpa", fused_convs=True)
    calls = []

    class Plan:  # stands for the launch plan (an interpreted forward takes seconds)
        def __init__(self, *args):
            calls.append("plan")
            self.output = torch.zeros(1)

        def __call__(self, x):
            return self.output
    with mock.patch.object(P, "for_first_call", lambda f, x: calls.append((f, x.shape))), \
            mock.patch("yolov12.plan.LaunchPlan", Plan):
        fast(torch.rand(1, 3, 64, 64))
        fast(torch.rand(1, 3, 64, 64))  # prepared: not again
    assert calls == [(fast, (1, 3, 64, 64)), "plan"]


def test_a_worker_that_dies_fails_its_job_and_leaves_the_rest(tmp_path):
    class Dead:  # a worker process that exited: its pipe closed, its last words in its log
        pid = 4242
        stdin, stdout = __import__("io").BytesIO(), __import__("io").BytesIO(b"")
    log = open(tmp_path / "log", "w+b")
    log.write(b"Traceback ...\nMemoryError: out of memory\n")
    jobs = [("kernel", "a"), ("kernel", "b"), ("launcher", "c")]
    queue, results = P._Queue(jobs), {}
    P._feed(Dead(), log, queue, results)
    assert results == {0: ("kernel", False, "compile worker exited (EOFError): MemoryError: out "
                           "of memory", 4242, 0.0, 0.0)}
    assert queue.take(front=False) == (2, jobs[2]) and queue.take(front=True) == (1, jobs[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32], ids=["fp16", "fp32"])
def test_cuda_first_forward_after_compiling_ahead_compiles_nothing(dtype, tmp_path,
                                                                   monkeypatch):
    """Batch 32 compiled by ``precompile``, batch 1 by the first call itself (its default): the
    forwards then find every variant in Triton's cache (its compile listener)."""
    from triton import knobs
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    report = P.precompile("n", 640, [32], dtype)
    assert report.variants > 30 and report.compiled + report.cached == report.variants
    fast = optimize(YOLOv12("n"), "cuda", dtype)
    ahead, inside, compiled = [], [], []
    first_call = P.for_first_call

    def compile_ahead(f, x):
        inside.append(x.shape)
        try:
            ahead.append(first_call(f, x))
        finally:
            inside.pop()
    monkeypatch.setattr(P, "for_first_call", compile_ahead)
    with knobs.compilation.scope():  # what the forwards compile, outside the compiles ahead
        knobs.compilation.listener = lambda **e: inside or compiled.append(e["cache_hit"])
        for batch in (32, 1):
            fast(torch.rand(batch, 3, 640, 640, device="cuda"))
    assert ahead[0].compiled == 0 and ahead[1].compiled > 0  # batch 32: all cached already
    assert compiled and False not in compiled

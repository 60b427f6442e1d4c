"""Recorded launches replayed through Triton's real launcher into a stub CUDA driver.

    python tests/_launcher_abi.py WORK_DIR [--plans n:1 n:32 ...] [--imgsz 640]
        [--attention fp16,bf16,fp32] [--negative]

Run by tests/test_launcher_abi.py in a subprocess whose Triton is the one under test (3.6.0 first
on PYTHONPATH, or the installed one), TRITON_INTERPRET unset, TRITON_CACHE_DIR set.

It builds the stub driver (tests/stub_libcuda.c, with gcc, against the ``cuda.h`` this Triton
ships) as ``WORK_DIR/libcuda.so.1`` and loads it before anything else can: the launchers Triton
builds link against ``libcuda.so.1`` (TRITON_LIBCUDA_PATH points Triton there) and the dynamic
loader hands them the library already loaded under that name. Triton's own CUDA driver module
(``CudaDriver``, its C utilities built against the stub) then stands in for a GPU, with the
device queries torch would answer on an H100 (device 0, sm_90, the default stream), and the
package's device checks answer for CPU tensors what they answer for an sm_90 GPU's
(``gpu_choices``).
Kernels compile for sm_90 at their first launch, as on the GPU, and every launch goes through
Triton's real launcher into the stub's ``cuLaunchKernelEx``, which runs nothing and keeps what it
was asked. CPU tensors stand for device memory: their addresses are the pointers passed.

Checked, for each launch plan (``--plans scale:batch``: YOLOv12 at ``--imgsz``, float16, the fused
path with the Triton attention, as ``optimize`` builds it on an sm_90 GPU, ``graphs=False``) and
each attention launch (``--attention DTYPES``: every launch of ``compile_check``'s set in those
dtypes, the extra head dims and 2-D token strides included; each plan run twice, through the JIT
and then through the plan's direct launch, and its recorded launches replayed): every recorded
launch reaches the driver exactly once with the grid it recorded, ``32 x num_warps`` threads and
the shared memory of its compiled kernel, that kernel's handle, the stream it was given, and
parameter bytes equal to those of Triton's own JIT launch of the same call; once without and once
with launch hooks.
``--negative``: a recorded launch with one argument taken out must not reach the kernel: refused
by the launcher (Triton 3.6's generated launcher counts its arguments), or, where the launcher
does not count them (Triton 3.9's generic one reads them by the signature), caught here by its
parameter bytes. Prints one JSON line: counts, seconds, failures; exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels: before any kernel module loads
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import triton  # noqa: E402

STUB_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stub_libcuda.c")
STREAM = 0x5EED  # the stream the attention replays pass: the driver must get it
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# bytes of a scalar kernel parameter as the launchers store it (floats: as their own width)
_SCALAR_BYTES = {"i1": 1, "i8": 1, "u1": 1, "u8": 1, "i16": 2, "u16": 2, "fp16": 2, "bf16": 2,
                 "i32": 4, "u32": 4, "fp32": 4, "f32": 4, "i64": 8, "u64": 8, "fp64": 8}


class Stub:
    """The stub driver (tests/stub_libcuda.c): built, loaded, and its record of the last launch
    read through ctypes."""

    def __init__(self, work_dir: str):
        include = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "include")
        self.dir = work_dir
        path = os.path.join(work_dir, "libcuda.so.1")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-Wl,-soname,libcuda.so.1",
                        f"-I{include}", "-o", path, STUB_SOURCE], check=True)
        self.lib = lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        self.launches = ctypes.c_longlong.in_dll(lib, "stub_launches")
        self.grid = (ctypes.c_uint * 3).in_dll(lib, "stub_grid")
        self.block = (ctypes.c_uint * 3).in_dll(lib, "stub_block")
        self.shared = ctypes.c_uint.in_dll(lib, "stub_shared")
        self.function = ctypes.c_ulonglong.in_dll(lib, "stub_function")
        self.stream = ctypes.c_ulonglong.in_dll(lib, "stub_stream")
        self.nparams = ctypes.c_int.in_dll(lib, "stub_nparams")
        self.sizes = (ctypes.c_int * 256).in_dll(lib, "stub_param_sizes")
        self.params = (ctypes.c_ubyte * 2048).in_dll(lib, "stub_params")

    def expect(self, sizes) -> None:
        """The parameter sizes of the next launch (how much of each it copies)."""
        for i, s in enumerate(sizes):
            self.sizes[i] = s
        self.nparams.value = len(sizes)

    def last(self) -> tuple:
        """(grid, block, shared memory, kernel handle, stream, parameter bytes) of the last
        launch."""
        n = sum(self.sizes[i] for i in range(self.nparams.value))
        return (tuple(self.grid), tuple(self.block), self.shared.value, self.function.value,
                self.stream.value, bytes(self.params[:n]))


def param_sizes(signature: dict) -> list[int]:
    """Bytes of each parameter the launcher hands the driver for a kernel of ``signature``
    (Triton's, name -> type): none for a constexpr, 8 for a pointer, then the two scratch
    pointers Triton appends (3.6 and 3.9)."""
    sizes = [8 if ty.startswith("*") else _SCALAR_BYTES[ty]
             for ty in signature.values() if ty != "constexpr"]
    return sizes + [8, 8]


def install_stub_gpu(stub: Stub) -> list:
    """Triton's CUDA driver on the stub, as an sm_90 device 0 on the default stream; each
    launcher tells the stub its parameter sizes first and logs the launch it makes. Returns the
    log (``Stub.last()`` per launch, in order)."""
    from triton.backends.nvidia import driver as nv
    from triton.runtime.driver import driver

    os.environ["TRITON_LIBCUDA_PATH"] = stub.dir  # where launchers link libcuda.so.1 from
    log = []

    class LoggedLauncher(nv.CudaLauncher):
        def __init__(self, src, metadata):
            super().__init__(src, metadata)
            self.sizes = param_sizes(src.signature)

        def __call__(self, *args):
            stub.expect(self.sizes)
            before = stub.launches.value
            super().__call__(*args)
            if stub.launches.value != before + 1:
                raise RuntimeError(f"one launch reached the stub driver "
                                   f"{stub.launches.value - before} times (another libcuda?)")
            log.append(stub.last())

    class StubGPU(nv.CudaDriver):
        def __init__(self):
            super().__init__()  # Triton's C utilities, built against the stub
            self.launcher_cls = LoggedLauncher
            self.get_current_device = lambda: 0
            self.set_current_device = lambda device: None
            self.get_current_stream = lambda device=None: 0
            self.get_device_capability = lambda device=None: (9, 0)

    driver.set_active(StubGPU())
    return log


def gpu_choices() -> None:
    """The package's device checks answer for CPU tensors as for an sm_90 GPU's: every module
    holding ``devices.unsupported_device`` gets one that lets the CPU through, and torch's
    capability query (the conv configurations' arch class) says sm_90."""
    import yolov12.fast  # noqa: F401  (the modules that check devices, imported first)
    import yolov12_kernels._conv_checks  # noqa: F401
    import yolov12_kernels.triton.backend  # noqa: F401
    from yolov12_kernels.triton import devices
    real = devices.unsupported_device

    def unsupported_device(device, dtype, interpret, what, below_sm80=""):
        if torch.device(device).type == "cpu":
            return None
        return real(device, dtype, interpret, what, below_sm80)

    for mod in list(sys.modules.values()):
        if getattr(mod, "unsupported_device", None) is real:
            mod.unsupported_device = unsupported_device
    torch.cuda.get_device_capability = lambda device=None: (9, 0)


def _set_hooks(enter, leave) -> None:
    """Triton's launch hooks (3.6: plain attributes; 3.9: chains of hooks)."""
    rt = triton.knobs.runtime
    for name, fn in (("launch_enter_hook", enter), ("launch_exit_hook", leave)):
        hook = getattr(rt, name)
        if hasattr(hook, "calls"):
            hook.calls[:] = [] if fn is None else [fn]
        else:
            setattr(rt, name, fn)


class Checker:
    """Compares what reached the driver with what the recorded launches say."""

    def __init__(self, stub: Stub, log: list):
        self.stub, self.log = stub, log
        self.failures: list[str] = []
        self.checked = 0
        self.kernels: set = set()
        self.first = None  # (the first launch checked, its JIT launch): the negative control's

    def fail(self, what: str) -> None:
        if len(self.failures) < 40:
            self.failures.append(what)

    def steps(self, label: str, steps, jit_log: list, replay, stream: int = 0) -> None:
        """``replay()`` (once without, once with launch hooks) must reach the driver once per
        launch of ``steps``, each as the step says and as ``jit_log`` (Triton's own JIT launches
        of the same calls, in order) has it, on ``stream``."""
        from yolov12_kernels.triton import launch
        fixed = [s for s in steps if not isinstance(s, launch.CallStep)]
        other = [type(s).__name__ for s in fixed if not isinstance(s, launch.FixedLaunch)]
        if other:
            self.fail(f"{label}: {len(other)} launches recorded as {other[0]}, not FixedLaunch "
                      "(the direct launch is not used)")
            return
        if len(jit_log) != len(fixed):
            self.fail(f"{label}: {len(jit_log)} JIT launches, {len(fixed)} recorded")
            return
        calls = []
        for hooks in (False, True):
            del self.log[:]
            if hooks:
                _set_hooks(lambda meta: calls.append("enter"), lambda meta: calls.append("exit"))
            try:
                replay()
            finally:
                _set_hooks(None, None)
            for problem in compare(f"{label}{' with hooks' if hooks else ''}", fixed, jit_log,
                                   list(self.log), stream):
                self.fail(problem)
        if calls != ["enter", "exit"] * len(fixed):
            self.fail(f"{label}: launch hooks called {len(calls)} times for {len(fixed)} "
                      "launches")
        self.checked += len(fixed)
        self.kernels.update(id(s.compiled) for s in fixed)
        if self.first is None and fixed:
            self.first = (fixed[0], jit_log[0])


def compare(label: str, fixed: list, jit_log: list, got: list, stream: int = 0) -> list[str]:
    """What differs between the launches that reached the driver (``got``, ``Stub.last()``
    tuples) and the recorded launches ``fixed`` (their grid, their compiled kernel's warps, shared
    memory and handle, ``stream``) and Triton's JIT launches of the same calls (``jit_log``)."""
    if len(got) != len(fixed):
        return [f"{label}: {len(got)} launches reached the driver, {len(fixed)} recorded"]
    problems = []
    for i, (step, jit, seen) in enumerate(zip(fixed, jit_log, got)):
        grid, block, shared, function, on_stream, params = seen
        meta = step.compiled.metadata
        want = (tuple(step.grid), (32 * meta.num_warps, 1, 1), meta.shared, step.function, stream)
        where = f"{label}: launch {i} ({step.compiled.name})"
        if seen[:5] != want:
            problems.append(f"{where}: grid {grid}, block {block}, shared {shared} B, kernel "
                            f"{function:#x}, stream {on_stream:#x} reached the driver; recorded: "
                            f"grid {want[0]}, {meta.num_warps} warps, shared {want[2]} B, kernel "
                            f"{want[3]:#x}, stream {stream:#x}")
        elif (seen[:4], params) != (jit[:4], jit[5]):
            at = next((k for k, (a, b) in enumerate(zip(params, jit[5])) if a != b),
                      min(len(params), len(jit[5])))
            problems.append(f"{where}: not the JIT's launch of the same call ({seen[:4]} vs "
                            f"{jit[:4]}; parameter bytes differ from byte {at} of "
                            f"{len(jit[5])})")
    return problems


def check_plan(chk: Checker, scale: str, batch: int, imgsz: int) -> int:
    """The launch plan of YOLOv12-``scale`` for (batch, 3, imgsz, imgsz), replayed."""
    from yolov12.fast import optimize
    from yolov12.model import YOLOv12
    from yolov12.plan import LaunchPlan
    torch.manual_seed(0)
    fast = optimize(YOLOv12(scale).eval(), "cpu", torch.float16, fused_convs=True,
                    backend="triton", graphs=False)
    if fast.attention_backend != "triton" or not fast.fused_convs:
        chk.fail(f"{scale}: the fast path runs {fast.attention_backend} attention, fused convs "
                 f"{fast.fused_convs}: not the GPU's choices")
        return 0
    x = torch.rand(batch, 3, imgsz, imgsz)
    del chk.log[:]
    fast(x)  # the plan's build: every launch through the JIT (compiled on first use), recorded
    plan = fast._replays.get(tuple(x.shape))
    if not isinstance(plan, LaunchPlan):
        chk.fail(f"{scale} b{batch}: no launch plan built ({type(plan).__name__})")
        return 0
    chk.steps(f"{scale} b{batch}", plan.steps, list(chk.log), plan.replay)
    return plan.launches()


def check_attention(chk: Checker, dtypes) -> int:
    """Every launch of compile_check's attention set in ``dtypes`` ("fp16", "bf16", "fp32";
    ``yolov12_launches``: every YOLOv12 shape at batch 1/8/32, both entry points, forward with
    and without gradient, backward; ``other_launches``: head_dim 16/64/128, 2-D token strides, a
    3x3 pe without bias), built by the backend's own code: each plan run twice, through the JIT
    then through its direct launch (the same launch), and the two recorded launches replayed."""
    from yolov12_kernels.triton import compile_check, launch
    wanted = {_DTYPES[d] for d in dtypes}
    runs = [run for run in compile_check.yolov12_launches(tuple(dtypes))
            + compile_check.other_launches(quick=False) if run[1][0].dtype in wanted]
    for i, (plan, ptrs, scale) in enumerate(runs):
        label = f"attention launch {i} ({plan.kernel.__name__}, {ptrs[0].dtype})"
        del chk.log[:]
        with launch.recording() as rec:
            plan.run(ptrs, scale)
            plan.run(ptrs, scale)
        jit, direct = chk.log[:1], chk.log[1:]
        if direct != jit:
            chk.fail(f"{label}: the plan's direct launch is not its JIT launch: {direct} != {jit}")
            continue
        chk.steps(label, rec.steps, jit * 2,
                  lambda: [step(STREAM, *launch.launch_hooks()) for step in rec.steps], STREAM)
    return 2 * len(runs)


def check_refused(chk: Checker) -> dict:
    """The first launch checked (a conv of the first plan, else an attention launch), replayed
    with its first integer argument taken out, must not reach the kernel: refused by the
    launcher, or caught by the comparison with the JIT's launch."""
    from yolov12_kernels.triton import launch
    if chk.first is None:
        chk.fail("negative control: no launch was checked to take an argument from")
        return {}
    step, jit = chk.first
    types = list(step.compiled.src.signature.values())
    if types[-1] != "constexpr":  # the generic launcher would read past the shortened tuple
        chk.fail(f"negative control: {step.compiled.name} ends with a {types[-1]} parameter")
        return {}
    drop = types.index("i32")
    short = launch.FixedLaunch(step.launcher, step.function, step.packed, step.compiled,
                               step.grid, step.args[:drop] + step.args[drop + 1:], step.tensors)
    del chk.log[:]
    before = chk.stub.launches.value
    try:
        short(0)
    except (TypeError, ValueError, SystemError) as e:  # what the launcher raises
        if chk.stub.launches.value != before:
            chk.fail("negative control: the launcher raised after the launch reached the driver")
        return {"refused_by": "launcher", "error": f"{type(e).__name__}: {e}"}
    caught = compare("negative control", [short], [jit], list(chk.log))
    if not caught:
        chk.fail("negative control: a launch missing an argument reached the driver as the "
                 "JIT's launch did")
        return {}
    return {"refused_by": "comparison", "error": caught[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work_dir")
    ap.add_argument("--plans", nargs="*", default=[], metavar="SCALE:BATCH")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--attention", default="", metavar="DTYPES",
                    help="comma-separated: fp16,bf16,fp32")
    ap.add_argument("--negative", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    os.makedirs(args.work_dir, exist_ok=True)
    stub = Stub(args.work_dir)
    chk = Checker(stub, install_stub_gpu(stub))
    gpu_choices()
    out = {"triton": triton.__version__, "plans": {}, "seconds": {}}
    for item in args.plans:
        scale, batch = item.split(":")
        t = time.time()
        out["plans"][item] = check_plan(chk, scale, int(batch), args.imgsz)
        out["seconds"][item] = round(time.time() - t, 1)
    if args.attention:
        t = time.time()
        out["attention"] = check_attention(chk, args.attention.split(","))
        out["seconds"]["attention"] = round(time.time() - t, 1)
    if args.negative:
        out["negative"] = check_refused(chk)
    out.update(checked=chk.checked, kernels=len(chk.kernels), failures=chk.failures)
    out["seconds"]["total"] = round(time.time() - t0, 1)
    cpu = os.times()  # this process and what it waited for (gcc, ptxas)
    out["seconds"]["cpu"] = round(cpu.user + cpu.system + cpu.children_user
                                  + cpu.children_system, 1)
    print(json.dumps(out))
    return 1 if chk.failures else 0


if __name__ == "__main__":
    sys.exit(main())

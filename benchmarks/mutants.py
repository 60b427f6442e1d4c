"""Mutation check of the test suite (issue 17): small realistic bugs, each put into a temporary copy
of the repository (never the working tree), and the tests that should catch it run there. By hand,
not in CI (minutes: the fused-forward tests run in Triton's interpreter):

    python -m benchmarks.mutants                 # every mutant
    python -m benchmarks.mutants nms-tie cuda-key-tail-mask
    python -m benchmarks.mutants --list

One line per mutant: ``caught`` (a listed test failed), ``SURVIVED`` (they all passed) or ``ERROR``
(pytest did not run the tests: a collection error, no test selected, a timeout). Exit status 1 if
any mutant survived or errored, or if the tests fail on the unmutated copy (checked first: a
failure there would make every mutant look caught). Each mutant is an exact text replacement whose
old text must occur exactly once in its file, so the script breaks loudly when the code moves;
docs/testing.md lists them with the reasoning, and tests/test_mutants.py checks in CI that every
one still applies.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str                # relative to the repository root
    old: str                 # exact text, occurring exactly once in ``path``
    new: str
    tests: tuple[str, ...]   # pytest node ids; the mutant is caught when one of them fails
    bug: str                 # what it breaks, in words


FUSED_LAYERS = "tests/test_fused_layers.py::test_fused_forward_layer_by_layer"
STEPS = "tests/test_fused_steps.py"
ABI = "tests/test_launcher_abi.py::test_recorded_launches_reach_the_driver_as_recorded"
REHEARSAL = "tests/test_rehearsal.py"
PLAN = "tests/test_plan.py"
MODES = "tests/test_autograd_modes.py"

MUTANTS = (
    # the three that survived the audit of issue 17
    Mutant("upsample-tiled", "yolov12/fused.py",
           "out.unflatten(2, (H, 2)).unflatten(4, (W, 2)),\n"
           "                      x[:, :, :, None, :, None])",
           "out.unflatten(2, (2, H)).unflatten(4, (2, W)),\n"
           "                      x[:, :, None, :, None, :])",
           (f"{STEPS}::test_upsample_is_nearest_interpolation_into_its_slice", FUSED_LAYERS),
           "the nearest upsample tiles the map 2x2 instead of repeating each pixel"),
    Mutant("nms-tie", "yolov12/predict.py",
           "order = rest[iou <= iou_threshold]",
           "order = rest[iou < iou_threshold]",
           ("tests/test_nms.py",),
           "NMS suppresses a box whose IoU equals the threshold (torchvision keeps it)"),
    Mutant("cuda-key-tail-mask", "csrc/area_attention_tiles.h",
           "return key < keys_left;",
           "return key <= keys_left;",
           ("tests/test_cuda_kernel_model.py",),
           "the CUDA attention kernel lets one key past the area's end into the softmax"),
    # the direct launch against Triton's real launcher (tests/test_launcher_abi.py; its Triton
    # 3.6.0 half runs in the copy only with YOLOV12_TRITON36 set: .triton36/ is not copied)
    Mutant("fixed-launch-grid-swap", "yolov12_kernels/triton/launch.py",
           "self.launcher(g0, g1, g2, stream,",
           "self.launcher(g1, g0, g2, stream,",
           (ABI,),
           "a recorded launch replays with its grid's x and y swapped"),
    Mutant("direct-launch-half-warps", "yolov12_kernels/triton/launch.py",
           "return launcher, compiled.function, compiled.packed_metadata",
           "return launcher, compiled.function, (compiled.packed_metadata[0] // 2,\n"
           "                                               *compiled.packed_metadata[1:])",
           (ABI,),
           "direct launches ask the driver for 16 x num_warps threads per block"),
    Mutant("plan-offsets-in-elements", "yolov12_kernels/triton/launch.py",
           "o * p.element_size()",
           "o",
           (ABI,),
           "a plan's direct launch adds pointer offsets in elements, not bytes"),
    # new ones of the same kinds
    Mutant("c2f-wrong-half", "yolov12/fused.py",
           "src, dst = y[:, (1 + j) * c:(2 + j) * c], y[:, (2 + j) * c:(3 + j) * c]",
           "src, dst = y[:, j * c:(1 + j) * c], y[:, (2 + j) * c:(3 + j) * c]",
           (f"{STEPS}::test_block_slices_into_a_concat_slice", FUSED_LAYERS),
           "C2f's blocks read the previous slice of its buffer (cv1's first half for block 1)"),
    Mutant("c3-cv2-slice", "yolov12/fused.py",
           "self.conv(m.cv2, x, z[:, c_:])",
           "self.conv(m.cv2, x, z[:, :c_])",
           (f"{STEPS}::test_block_slices_into_a_concat_slice", FUSED_LAYERS),
           "C3k's cv2 writes over the blocks' half of its buffer, the other half never written"),
    Mutant("a2c2f-stage-slice", "yolov12/fused.py",
           "src, dst = y[:, j * c_:(j + 1) * c_], y[:, (j + 1) * c_:(j + 2) * c_]",
           "src, dst = y[:, j * c_:(j + 1) * c_], y[:, j * c_:(j + 1) * c_]",
           (f"{STEPS}::test_block_slices_into_a_concat_slice", FUSED_LAYERS),
           "an A2C2f stage writes its output over its input's slice"),
    Mutant("concat-offset", "yolov12/fused.py",
           "self.cat_parts[s] = (i, off, chans[s])",
           "self.cat_parts[s] = (i, off // 2, chans[s])",
           (f"{STEPS}::test_concat_parts_at_their_slices", FUSED_LAYERS),
           "a concat part written at half its channel offset (over the part before it)"),
    Mutant("concat-copy-offset", "yolov12/fused.py",
           "buf[:, off:off + t.shape[1]], t)",
           "buf[:, :t.shape[1]], t)",
           (f"{STEPS}::test_concat_parts_at_their_slices",),
           "a part already in an earlier concat is copied to channel 0 of the next one"),
    Mutant("detect-swapped-stride", "yolov12/fused.py",
           "level = d[:, a0:a0 + h * w].unflatten(1, (h, w)).permute(0, 3, 1, 2)",
           "level = d[:, a0:a0 + h * w].unflatten(1, (w, h)).permute(0, 3, 2, 1)",
           (f"{STEPS}::test_detect_level_rows_and_column_ranges", FUSED_LAYERS),
           "Detect writes each level's anchors column-major (H and W strides swapped)"),
    Mutant("detect-class-columns", "yolov12/fused.py",
           "self.seq(m.cv3[i], t, level[:, nbox:])",
           "self.seq(m.cv3[i], t, level[:, nbox - 1:-1])",
           (f"{STEPS}::test_detect_level_rows_and_column_ranges", FUSED_LAYERS),
           "Detect's class maps written one column early (over the last box bin)"),
    Mutant("misplaced-residual", "yolov12/fused.py",
           "x1 = self.conv(a.proj, att, x if owned else None, residual=x)",
           "x1 = self.conv(a.proj, att, x, residual=x)",
           (f"{STEPS}::test_block_slices_into_a_concat_slice", FUSED_LAYERS),
           "the attention residual sum stored in place into the block's input, a slice of the "
           "A2C2f buffer that its cv2 still reads"),
    Mutant("grouped-conv-weights", "yolov12/fused.py",
           "ws = tuple(w[i * co:(i + 1) * co].contiguous(memory_format=_CL) for i in range(g))",
           "ws = tuple(w[:co].contiguous(memory_format=_CL) for i in range(g))",
           (f"{STEPS}::test_grouped_conv_per_group_into_its_slice",),
           "every group of a grouped conv runs with the first group's weights"),
    Mutant("nms-class-offset", "yolov12/predict.py",
           "shifted = boxes + (idxs.to(boxes.dtype) * span)[:, None]",
           "shifted = boxes + idxs.to(boxes.dtype)[:, None]",
           ("tests/test_nms.py",),
           "class-aware NMS shifts each class by one pixel, not apart"),
    Mutant("nms-zero-area", "yolov12/predict.py",
           "return inter / union.clamp(min=torch.finfo(inter.dtype).tiny)",
           "return inter / union",
           ("tests/test_nms.py",),
           "IoU of two zero-area boxes is NaN, and NMS drops them"),
    Mutant("cuda-store-row-mask", "csrc/area_attention_tiles.h",
           "return row < n;",
           "return row <= n;",
           ("tests/test_cuda_kernel_model.py",),
           "the CUDA attention kernel stores one query row past the area's end"),
    Mutant("cuda-q-fragment-row", "csrc/area_attention_tiles.h",
           "return m0 + g + ((r & 1) ? 8 : 0);",
           "return m0 + g + ((r & 2) ? 8 : 0);",
           ("tests/test_cuda_kernel_model.py",),
           "the CUDA attention kernel's Q fragment rows and columns mixed up (a1 and a2 swapped)"),
    # issue 25: what only the GPU's choices and the autograd modes reach
    Mutant("auto-no-question", "yolov12_kernels/dispatch.py",
           "        if mod is not None:\n"
           "            reason = mod.unsupported(op, device, dtype, head_dim, needs_grad)\n"
           "        if not reason:",
           "        if not reason:",
           (f"{REHEARSAL}::test_auto_skips_a_refusing_backend_and_says_why_once",),
           '"auto" takes the first available backend without asking whether it takes the call'),
    Mutant("plan-input-alias", "yolov12/plan.py",
           "self.input = torch.empty(x.shape, dtype=dtype, device=device,\n"
           "                                     memory_format=memory_format)\n"
           "            self.input.copy_(x)",
           "self.input = x.to(device=device, dtype=dtype, memory_format=memory_format)",
           (f"{PLAN}::test_the_callers_input_is_never_the_prepared_input",),
           "a plan's input buffer is the caller's tensor when it is already in the model's "
           "dtype and memory format (the next call overwrites it)"),
    Mutant("graph-input-alias", "yolov12/fast.py",
           "static_input = torch.empty(x.shape, device=self.device, dtype=self.dtype,\n"
           "                                           memory_format=self.memory_format)\n"
           "            static_input.copy_(x)",
           "static_input = x.to(device=self.device, dtype=self.dtype,\n"
           "                                    memory_format=self.memory_format)",
           (f"{PLAN}::test_the_callers_input_is_never_the_prepared_input",),
           "a CUDA graph's static input is the caller's tensor when already in the model's "
           "dtype and memory format"),
    Mutant("replay-key-no-batch", "yolov12/fast.py",
           "key = tuple(x.shape)",
           "key = tuple(x.shape[1:])",
           (f"{PLAN}::test_two_batch_sizes_at_one_image_size",),
           "prepared shapes keyed without the batch: batch 1 replays batch 2's plan or graph"),
    Mutant("pe-taps-version", "yolov12_kernels/triton/area_attention.py",
           "return _UNVERSIONED if t.is_inference() else t._version",
           "return t._version",
           (f"{MODES}::test_pe_tap_table_of_inference_tensors",),
           "the pe tap table keyed on the version counter an inference tensor does not have"),
    Mutant("pe-taps-stale", "yolov12_kernels/triton/area_attention.py",
           "if ver != version or _UNVERSIONED in version:",
           "if ver != version:",
           (f"{MODES}::test_pe_tap_table_of_inference_tensors",),
           "the pe tap table of inference-tensor weights never rewritten after they change"),
    Mutant("build-in-callers-mode", "yolov12/fast.py",
           "    @torch.inference_mode(False)\n    def __init__(",
           "    def __init__(",
           (f"{MODES}::test_built_in_inference_mode_loads_and_runs_in_any_mode",),
           "a fast model built in inference mode holds inference tensors, which "
           "load_state_dict cannot update outside inference mode"),
    Mutant("refresh-outside-inference", "yolov12/fused.py",
           "        with torch.inference_mode():\n"
           "            for m, name, value in self._prepared():",
           "        with torch.no_grad():\n"
           "            for m, name, value in self._prepared():",
           (f"{MODES}::test_prepared_copies_of_inference_tensors_are_refreshed_in_any_mode",),
           "the fused forward's prepared copies rewritten outside inference mode"),
    Mutant("graph-copy-outside-inference", "yolov12/fast.py",
           "if static_input.is_inference() and not torch.is_inference_mode_enabled():",
           "if False:",
           (f"{REHEARSAL}::test_graph_input_made_in_inference_mode_takes_calls_in_any_mode",),
           "a call outside inference mode copies into a static input made under it"),
    Mutant("plan-bound-in-halves", "yolov12_kernels/triton/launch.py",
           "    byte_offsets = tuple(0 if p is None else o * p.element_size()",
           "    plan.bound = Bound(*direct, compiled, None)  # published before its offsets\n"
           "    byte_offsets = tuple(0 if p is None else o * p.element_size()",
           (f"{PLAN}::test_two_threads_on_a_cold_plan_never_see_half_a_binding",),
           "a cold plan's direct launch published before its byte offsets (another thread "
           "zips its pointers with None)"),
    Mutant("capture-global-errors", "yolov12/fast.py",
           'capture_error_mode="thread_local"',
           'capture_error_mode="global"',
           (f"{REHEARSAL}::test_cuda_capture_is_thread_local_on_the_warm_up_stream",),
           "CUDA graph capture fails on (and breaks) other threads' CUDA calls"),
    Mutant("autocast-reaches-fast-model", "yolov12/fast.py",
           "if torch.is_autocast_enabled(self.device.type):",
           "if False:",
           (f"{REHEARSAL}::test_autocast_does_not_reach_a_fast_model",),
           "autocast changes a fast model's eager ops (and a graph freezes it at capture)"),
)


def repository_files(root: Path) -> list[str]:
    """Tracked files and untracked ones git does not ignore (a new test counts before its
    commit); build outputs, caches and ignored folders stay behind."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=root, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def mutated(text: str, m: Mutant) -> str:
    count = text.count(m.old)
    if count != 1:
        raise ValueError(f"mutant {m.name}: its old text occurs {count} times in {m.path} "
                         f"(expected exactly once; the code moved: update the mutant)\n"
                         f"  old text: {m.old!r}")
    return text.replace(m.old, m.new)


def check_applicable(root: Path, mutants=MUTANTS) -> None:
    """Raise ValueError unless every mutant's old text occurs exactly once in its file."""
    for m in mutants:
        path = root / m.path
        if not path.is_file():
            raise ValueError(f"mutant {m.name}: {m.path} does not exist")
        mutated(path.read_text(), m)


def run_pytest(copy: Path, tests, timeout: float) -> tuple[int | None, str]:
    """(pytest's exit status or None on a timeout, the end of its output), run in ``copy``."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-p", "no:randomly", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, "\n".join(lines[-15:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutants", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of the tests on the unmutated copy")
    parser.add_argument("--timeout", type=float, default=1200,
                        help="seconds per pytest run (default 1200)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print pytest's output for every mutant, not only the ones not caught")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:24s} {m.path}: {m.bug}")
        return 0
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; --list shows them")
    chosen = [known[n] for n in args.names] or list(MUTANTS)
    try:
        check_applicable(ROOT, chosen)
    except ValueError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    failed = 0
    with tempfile.TemporaryDirectory(prefix="yolov12-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        for rel in repository_files(ROOT):
            dst = copy / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst)
        print(f"copy of {ROOT} in {copy}; {len(chosen)} mutant(s)", flush=True)
        if not args.no_baseline:
            tests = list(dict.fromkeys(t for m in chosen for t in m.tests))
            start = time.monotonic()
            rc, tail = run_pytest(copy, tests, args.timeout * 2)
            print(f"baseline (unmutated) {'passed' if rc == 0 else 'FAILED'} "
                  f"({time.monotonic() - start:.0f} s)", flush=True)
            if rc != 0:
                print(tail)
                return 1
        for m in chosen:
            path = copy / m.path
            original = path.read_text()
            path.write_text(mutated(original, m))
            start = time.monotonic()
            try:
                rc, tail = run_pytest(copy, m.tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = "caught" if rc == 1 else "SURVIVED" if rc == 0 else "ERROR"
            failed += verdict != "caught"
            print(f"{verdict:9s} {m.name:24s} ({time.monotonic() - start:4.0f} s) {m.bug}",
                  flush=True)
            if verdict != "caught" or args.verbose:
                print("    " + tail.replace("\n", "\n    "))
    print(f"{len(chosen) - failed} of {len(chosen)} caught")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

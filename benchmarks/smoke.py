"""The default user path on this device, layer by layer, against the float64 model.

    python -m benchmarks.smoke --out DIR [--device cuda] [--scales n s] [--dtypes float16 float32]
                               [--batches 1 32] [--imgsz 640] [--fused-convs auto|on|off]

For each case (scale x dtype x batch, in that order: the first is the most used) it does what a
user does, with nothing pinned:

    model = YOLOv12(scale).eval()
    with torch.inference_mode():
        fast = model.optimize(device, dtype)      # built inside inference mode
        y1 = fast(x); y2 = fast(x)                # the first call prepares (a CUDA graph on a
                                                  # GPU), the second replays

then compares with the float64 model (the same weights, reference attention): both calls' outputs,
and every layer's output of the fast path (the fused forward's ``layer_outputs``, its buffers
NaN-poisoned; the modules' outputs by forward hooks where the fused convs do not run), each within
3x the error the model itself makes in the same dtype (the framework's error: the unfused model in
that dtype, reference attention; ``FACTOR`` says why 3), never below the dtype's floor (the floors
of the tests, tests/_utils.py). The Detect head's output is checked as boxes over the image side and class
scores. The first layer outside its bound is named.

The model has random weights with every BatchNorm scaled on a structured image
(tests/_layers.py: ``spread_features``, ``structured_image``): with the plain random init the deep
features are nearly constant over the image, and a layout bug (a transposed level, a tiled
upsample) would move the output by less than the dtype's own error.

``DIR/smoke.json`` is rewritten (whole, atomically) after every case, so a run cut short keeps
every finished case: per case the fast path's choices (fused convs, attention backend), the host
seconds of optimize() and of each call, every layer's error (``checks``: max abs error, the
framework's, the bound, relative L2 error, NaN), the outputs' errors, ``first_wrong`` and, for a
case that raised, the ``stage`` and the error. Exit status 0 when every case is right, 1 if not.

On a CPU (no GPU visible, or ``--device cpu``) it runs the same code with Triton's interpreter
(``TRITON_INTERPRET=1``, set here before any kernel module is imported): the default path there is
PyTorch's convs; ``--fused-convs on`` runs the fused kernels interpreted (tests use a 64x64 image).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Allowed error: this many times the framework's own error in the same dtype (the unfolded model
# run by PyTorch). 3, not the 2 of the op tests: the fast path folds BN, a different rounding that
# compounds over the layers, and one layer's maximum over a small image is a noisy statistic —
# measured on the CPU at 64x64, fp32, the modules path: layer 7 at 2.13x the framework's error
# with one thread, under 2x with two. A layout or indexing bug moves a layer by the size of its
# features (0.2-0.76 of them, docs/testing.md), thousands of times either bound.
FACTOR = 3.0
SCALES, DTYPES = ("n", "s", "m", "l", "x"), ("float16", "bfloat16", "float32")
FUSED = {"auto": None, "on": True, "off": False}


def _import_layer_tools():
    """tests/_layers.py (structured image, spread features) and the tolerance floors of
    tests/_utils.py: the machinery the layer-by-layer tests use, so both check alike."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from _layers import spread_features, structured_image
    from _utils import ATOL
    return spread_features, structured_image, ATOL


def compare(out, truth, framework, atol: dict, factor: float = FACTOR) -> dict:
    """One output against the float64 truth, bounded by ``factor`` x the framework's error (the
    reference in ``out``'s precision), never below ``atol[out.dtype]``."""
    import torch
    if tuple(out.shape) != tuple(truth.shape):
        return {"ok": False, "error": f"shape {tuple(out.shape)} != {tuple(truth.shape)}"}
    o, t = out.double(), truth.double()
    nan = bool(torch.isnan(o).any())
    err = (o - t).abs().max().item() if o.numel() else 0.0
    fw_err = (framework.double() - t).abs().max().item() if o.numel() else 0.0
    allowed = max(atol.get(out.dtype, 0.0), factor * fw_err)
    rel = ((o - t).norm() / t.norm().clamp(min=1e-30)).item()
    return {"err": err, "framework_err": fw_err, "allowed": allowed, "rel_l2": rel, "nan": nan,
            "ok": (not nan) and err <= allowed}


def compare_layer(out, truth, framework, atol: dict, side: int) -> list[dict]:
    """``compare`` of one layer's output; the Detect head's (B, 4 + nc, anchors) as boxes over the
    image side and class scores (the boxes are in pixels)."""
    if truth.dim() != 3:
        return [dict(part="", **compare(out, truth, framework, atol))]
    return [dict(part="boxes/side", **compare(out[:, :4] / side, truth[:, :4] / side,
                                              framework[:, :4] / side, atol)),
            dict(part="scores", **compare(out[:, 4:], truth[:, 4:], framework[:, 4:], atol))]


def first_wrong(checks: list[dict]) -> str | None:
    bad = next((c for c in checks if not c["ok"]), None)
    if bad is None:
        return None
    what = f"layer {bad['layer']} ({bad['name']}{', ' + bad['part'] if bad['part'] else ''})"
    if "error" in bad:
        return f"{what}: {bad['error']}"
    if bad["nan"]:
        return f"{what}: NaN (an element not written?)"
    return (f"{what}: max error {bad['err']:.3g} > allowed {bad['allowed']:.3g} (the framework's "
            f"{bad['framework_err']:.3g})")


def _layer_outputs(run, net) -> list:
    """Every layer's output of ``run()`` (a forward of ``net``, a YOLOv12), by forward hooks."""
    outs: list = []
    hooks = [layer.register_forward_hook(lambda mod, inp, out: outs.append(out))
             for layer in net.model]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return outs


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(model, dtype, x, atol: dict, fused_convs: bool | None = None) -> dict:
    """One case on ``model`` (a YOLOv12 on the device, float32, eval) with image ``x`` (float64,
    on the device); ``fused_convs`` as ``optimize()`` takes it (None: the default path). Never
    raises: an exception is recorded with the stage it came from."""
    import torch
    device, side = x.device, x.shape[-1]
    names = [type(m).__name__ for m in model.model]
    rec: dict = {"status": "error", "stage": "optimize"}
    xin = x.to(dtype)
    try:
        with torch.inference_mode():  # the user's path: built and called in inference mode
            t0 = time.perf_counter()
            fast = model.optimize(device, dtype, fused_convs=fused_convs)
            _sync(device)
            rec.update(optimize_s=round(time.perf_counter() - t0, 3), fused_convs=fast.fused_convs,
                       attention_backend=fast.attention_backend,
                       channels_last=fast.channels_last)
            calls = {}
            for label in ("first call", "second call"):
                rec["stage"] = label
                t0 = time.perf_counter()
                calls[label] = fast(xin)  # the caller's copy (a replay's buffer is not)
                _sync(device)
                rec[label.replace(" ", "_") + "_s"] = round(time.perf_counter() - t0, 4)
            rec["stage"] = "layer outputs"
            xf = xin.contiguous(memory_format=fast.memory_format)
            if fast._fused is not None:  # the fused forward, its buffers NaN-poisoned
                fast._fused.poison = True
                outs: list = []
                fast._fused(xf, layer_outputs=outs)
            else:  # the modules the fast path runs
                outs = _layer_outputs(lambda: fast.net.run(xf), fast.net)
        rec["stage"] = "reference"
        framework_net = copy.deepcopy(model).to(dtype).set_attention_backend("reference")
        truth_net = copy.deepcopy(model).double().set_attention_backend("reference")
        with torch.inference_mode():
            framework = _layer_outputs(functools.partial(framework_net.run, xin), framework_net)
            del framework_net
            if not len(outs) == len(framework) == len(names):
                raise RuntimeError(f"{len(outs)} layer outputs from the fast path, "
                                   f"{len(framework)} from the reference, for {len(names)} layers")
            checks: list = []
            final: dict = {}

            def check(mod, inp, out):  # layer by layer: the float64 outputs are not all kept
                i = len(seen)
                seen.append(i)
                checks.extend(dict(layer=i, name=names[i], **c)
                              for c in compare_layer(outs[i], out, framework[i], atol, side))
                if i == len(names) - 1:
                    for label, y in calls.items():
                        final[label] = compare_layer(y, out, framework[i], atol, side)
            seen: list = []
            hooks = [layer.register_forward_hook(check) for layer in truth_net.model]
            try:
                truth_net.run(x)
            finally:
                for h in hooks:
                    h.remove()
        rec.update(checks=checks, outputs=final, first_wrong=first_wrong(checks))
        wrong_output = next((label for label, cs in final.items()
                             if not all(c["ok"] for c in cs)), None)
        if rec["first_wrong"] is None and wrong_output:
            rec["first_wrong"] = f"the output of the {wrong_output} (every layer within its bound)"
        measured = [c for c in checks if "err" in c]
        if measured:
            worst = max(measured, key=lambda c: c["err"] / max(c["allowed"], 1e-30))
            rec["worst"] = {"layer": worst["layer"], "name": worst["name"], "part": worst["part"],
                            "ratio": worst["err"] / max(worst["allowed"], 1e-30)}
        rec["status"] = "ok" if rec["first_wrong"] is None else "wrong"
        del rec["stage"]
    except Exception as e:  # noqa: BLE001 — a case that raises is a result, the others still run
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        rec["error"] = f"{type(e).__name__}: {first[:500]}"
        rec["traceback"] = traceback.format_exc()[-4000:]
    return rec


def case_line(c: dict) -> str:
    head = f"{c['scale']} {c['dtype']} b{c['batch']}"
    if c["status"] == "error":
        return f"{head}: ERROR in {c.get('stage')}: {c.get('error')}"
    how = (f"fused convs {'on' if c.get('fused_convs') else 'off'}, attention "
           f"{c.get('attention_backend')}")
    if c["status"] == "wrong":
        return f"{head}: WRONG at {c['first_wrong']} ({how})"
    w = c["worst"]
    return (f"{head}: ok, {len(c['checks'])} checks, worst {w['ratio']:.2f} of its bound at layer "
            f"{w['layer']} ({w['name']}{', ' + w['part'] if w['part'] else ''}); {how}; "
            f"optimize {c['optimize_s']:.1f} s, first call {c['first_call_s']:.1f} s, "
            f"second {c['second_call_s'] * 1e3:.1f} ms")


def summary_line(doc: dict) -> str:
    """One line for the GPU check's table."""
    cases = doc.get("cases", [])
    ok = sum(c["status"] == "ok" for c in cases)
    bad = [case_line(c) for c in cases if c["status"] != "ok"]
    line = f"{ok}/{len(cases)} cases right ({doc.get('device')}, {doc.get('imgsz')} px)"
    if not doc.get("complete", True):
        line += f", {doc.get('planned', len(cases)) - len(cases)} not reached"
    return "; ".join([line] + bad)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.smoke",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory for smoke.json")
    ap.add_argument("--device", default=None, help="cuda (default where one is visible) or cpu")
    ap.add_argument("--scales", nargs="+", default=["n", "s"], choices=SCALES)
    ap.add_argument("--dtypes", nargs="+", default=["float16", "float32"], choices=DTYPES)
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--imgsz", type=int, default=640, help="square image side, a multiple of 32")
    ap.add_argument("--fused-convs", default="auto", choices=sorted(FUSED),
                    help="optimize(fused_convs=...): auto is the default path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="smoke.json", help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.imgsz < 32 or args.imgsz % 32:
        raise SystemExit(f"--imgsz: expected a multiple of 32, got {args.imgsz}")
    if any(b < 1 for b in args.batches):
        raise SystemExit(f"--batches: expected positive batch sizes, got {args.batches}")
    import torch
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device: cuda requested but torch sees no CUDA device")
    if device.type != "cuda":  # before any kernel module is imported (the tests' conftest rule)
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from yolov12 import YOLOv12
    from yolov12.outputs import write_text
    spread_features, structured_image, atol = _import_layer_tools()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = [(s, d, b) for s in args.scales for d in args.dtypes for b in args.batches]
    doc = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "imgsz": args.imgsz, "fused_convs_request": args.fused_convs, "factor": FACTOR,
           "planned": len(plan), "complete": False, "cases": []}
    images: dict = {}
    models: dict = {}
    for scale, dtype_name, batch in plan:
        if scale not in models:  # one model per scale, features spread on a 2-image batch
            models.clear()
            torch.manual_seed(args.seed)
            model = YOLOv12(scale).eval().to(device)
            spread_features(model, structured_image(2, args.imgsz, args.imgsz).to(device),
                            seed=args.seed)
            models[scale] = model
        if batch not in images:
            images[batch] = structured_image(batch, args.imgsz, args.imgsz).to(
                device=device, dtype=torch.float64)
        t0 = time.perf_counter()
        case = {"scale": scale, "dtype": dtype_name, "batch": batch,
                **run_case(models[scale], getattr(torch, dtype_name), images[batch], atol,
                            FUSED[args.fused_convs])}
        case["seconds"] = round(time.perf_counter() - t0, 2)
        doc["cases"].append(case)
        doc["complete"] = len(doc["cases"]) == len(plan)
        write_text(out / args.name, json.dumps(doc, indent=1) + "\n")
        print(case_line(case), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(summary_line(doc))
    return 0 if all(c["status"] == "ok" for c in doc["cases"]) else 1


if __name__ == "__main__":
    sys.exit(main())

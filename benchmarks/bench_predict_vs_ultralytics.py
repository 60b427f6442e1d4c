"""End-to-end predict throughput: this project against ultralytics, same images, same threads.

    python benchmarks/bench_predict_vs_ultralytics.py --ultralytics-python /tmp/ulv/bin/python \
        [--source DIR] [--threads 2] [--rounds 3] [--imgsz 640] [--out benchmarks/results]

Each measurement is a fresh process with ``OMP_NUM_THREADS`` = ``--threads``, and ultralytics'
own thread setting (``min(8, cores - 1)``, applied when it picks the device, whatever the
variable says) set to the same number; the API runs check the count the model ran on. The sides
alternate within every round, so that both see the same machine.
Per image, median over rounds:

* ``api``: the Python API over the folder, images read by the library (``Predictor.stream`` here;
  ``YOLO.predict(source=DIR, stream=True)`` there), after one warm-up image;
* ``api-serial`` (this project only): the one-image-at-a-time loop (``load_image`` then
  ``Predictor([image])``) — what the API did before the pipeline;
* ``cli-save``: the commands with annotated images saved (``yolov12 predict`` / ``yolo predict
  save=True``), start-up excluded: both print a line per image ("image k/n ...") once its
  annotated file is written, and the time from the first line to the last over the images
  between is the steady state.

Both run a randomly initialised YOLOv12-N / YOLO12n (``--model n`` / ``yolo12n.yaml``): speed does
not depend on the weights, and no weights can be downloaded here. ultralytics runs in its own
Python (``--ultralytics-python``: a separate virtual environment; it is never imported by this
project); without it the comparison is skipped with one line and only this project is measured.
Results: ``<out>/predict_vs_ultralytics.jsonl`` (one record per side and mode) and a table on
stdout. Default source: the synthetic 1080p JPEGs of ``yolov12 bench suite=predict``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

OURS_API = r"""
import sys, time, torch
from pathlib import Path
from yolov12 import YOLOv12
from yolov12.predict import Predictor, load_image
folder, imgsz, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
pred = Predictor(YOLOv12("n").eval(), imgsz=imgsz, device="cpu")
for _ in pred.stream(files[:1]): pass
pred([load_image(files[0])])
t = time.perf_counter()
if mode == "api":
    for _ in pred.stream(files): pass
else:
    for f in files: pred([load_image(f)])
print("PER_IMAGE_MS", 1000 * (time.perf_counter() - t) / len(files), torch.get_num_threads())
"""

# ultralytics sets torch's threads to min(8, cores - 1) when it picks the device (1 on a 2-core
# machine), whatever OMP_NUM_THREADS says: its NUM_THREADS is set to --threads first, so that both
# sides run the model on the same number of threads
ULTRALYTICS_THREADS = r"""
import os, ultralytics.utils as u, ultralytics.utils.torch_utils as tu
u.NUM_THREADS = tu.NUM_THREADS = int(os.environ["OMP_NUM_THREADS"])
"""

ULTRALYTICS_API = ULTRALYTICS_THREADS + r"""
import sys, time, torch
from pathlib import Path
from ultralytics import YOLO
folder, imgsz = Path(sys.argv[1]), int(sys.argv[2])
files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
model = YOLO("yolo12n.yaml")
for _ in model.predict(source=str(files[0]), stream=True, imgsz=imgsz, device="cpu",
                       verbose=False): pass
t = time.perf_counter()
for _ in model.predict(source=str(folder), stream=True, imgsz=imgsz, device="cpu", verbose=False):
    pass
print("PER_IMAGE_MS", 1000 * (time.perf_counter() - t) / len(files), torch.get_num_threads())
"""

ULTRALYTICS_CLI = ULTRALYTICS_THREADS + r"""
import sys
from ultralytics.cfg import entrypoint
sys.argv = ["yolo", *sys.argv[1:]]
entrypoint()
"""

ULTRALYTICS_VERSIONS = ("import ultralytics, torch, cv2, json; print(json.dumps({'ultralytics': "
                        "ultralytics.__version__, 'torch': torch.__version__, 'opencv': "
                        "cv2.__version__}))")


def _env(threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "YOLO_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _per_image(cmd, env, threads: int) -> float:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("PER_IMAGE_MS")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"{' '.join(map(str, cmd[:3]))} failed:\n{r.stderr[-2000:]}")
    ms, used = line.split()[1:3]
    if int(used) != threads:  # the model ran on another number of threads than asked
        raise RuntimeError(f"{' '.join(map(str, cmd[:2]))} ran on {used} threads, not {threads}")
    return float(ms)


def _command_ms(cmd, env, n: int) -> float:
    """Steady-state ms per image of a command that prints a line per image ("image k/n ...")
    once its file is written: the time from its first such line to its last, over n - 1 images.
    Start-up (imports, model build, the first image) is outside it, whatever it costs in that
    run."""
    stamps = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**env, "PYTHONUNBUFFERED": "1"})
    tail = []
    for line in proc.stdout:
        if line.startswith("image "):
            stamps.append(time.perf_counter())
        tail = (tail + [line])[-30:]
    if proc.wait() != 0 or len(stamps) != n:
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} exited {proc.returncode} with "
                           f"{len(stamps)} of {n} image lines:\n{''.join(tail)}")
    return 1000 * (stamps[-1] - stamps[0]) / (n - 1)


def ultralytics_versions(python) -> dict | None:
    if not python or not Path(python).exists():
        return None
    r = subprocess.run([python, "-c", ULTRALYTICS_VERSIONS], capture_output=True, text=True,
                       env=_env(1), timeout=600)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ultralytics-python", default=None,
                   help="the python of a virtual environment with ultralytics installed")
    p.add_argument("--source", default=None, help="folder of images (default: synthetic 1080p)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--modes", default="api,api-serial,cli-save")
    p.add_argument("--out", default=None, help="folder for predict_vs_ultralytics.jsonl")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from yolov12.bench.predict_suite import images_in, synthetic
    from yolov12.bench.records import environment, summarize

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    ul_python = args.ultralytics_python
    ul = ultralytics_versions(ul_python)
    if ul is None:
        print(f"ultralytics: not importable by {ul_python or '(no --ultralytics-python)'}; "
              "the comparison is skipped, this project alone is measured")
    tmp = Path(tempfile.mkdtemp(prefix="yolov12-vs-ul-"))
    try:
        folder = Path(args.source) if args.source else synthetic(tmp / "images")
        files = images_in(folder)
        env = _env(args.threads)
        ours_cli = (lambda src, tag: [sys.executable, "-m", "yolov12", "predict", str(src),
                                      "--model", "n", "--imgsz", str(args.imgsz), "--device",
                                      "cpu", "--out", str(tmp / f"ours-{tag}"), "--exist-ok",
                                      "--no-progress"])
        ul_cli = (lambda src, tag: [ul_python, "-c", ULTRALYTICS_CLI, "predict",
                                    "model=yolo12n.yaml", f"source={src}",
                                    f"imgsz={args.imgsz}", "device=cpu", "save=True",
                                    f"project={tmp}", f"name=ul-{tag}", "exist_ok=True"])
        runs: dict = {}
        loads = []
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.rounds} (load {loads[-1]:.1f})", flush=True)
            for mode in modes:
                sides = ["yolov12"] + (["ultralytics"] if ul and mode != "api-serial" else [])
                if r % 2:
                    sides.reverse()  # alternate who goes first
                for side in sides:
                    if mode in ("api", "api-serial") and side == "yolov12":
                        ms = _per_image([sys.executable, "-c", OURS_API, str(folder),
                                         str(args.imgsz), mode], env, args.threads)
                    elif mode == "api":
                        ms = _per_image([ul_python, "-c", ULTRALYTICS_API, str(folder),
                                         str(args.imgsz)], env, args.threads)
                    elif mode == "cli-save":
                        make = ours_cli if side == "yolov12" else ul_cli
                        ms = _command_ms(make(folder, "full"), env, len(files))
                    else:
                        continue
                    runs.setdefault((side, mode), []).append(ms)
                    print(f"  {side:11s} {mode:10s} {ms:7.1f} ms/image", flush=True)
        loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = {"suite": "predict", "name": "n", "dtype": "float32", "batch": 1,
            "imgsz": args.imgsz, "images": len(files), "threads": args.threads,
            "rounds": args.rounds, "source": str(args.source) if args.source else
            f"synthetic {len(files)} x 1920x1080 JPEG", "load_avg_1min": loads,
            "cpus": os.cpu_count()}
    base.update(environment("cpu"))
    records = []
    for (side, mode), ms in runs.items():
        t = summarize(ms)
        rec = {**base, "provider": f"{side}-{mode}", "shape": "letterboxed per image",
               **{k: t[k] for k in ("median_ms", "p20_ms", "p80_ms")}, "runs_ms": ms,
               "images_per_s": 1000 / t["median_ms"]}
        if side == "ultralytics":
            rec.update({"ultralytics": ul["ultralytics"], "ultralytics_torch": ul["torch"],
                        "opencv": ul["opencv"]})
        records.append(rec)
    print(f"\n{len(files)} images, {args.threads} threads, load average "
          f"{min(loads):.1f}-{max(loads):.1f} during the run")
    print("| mode | yolov12 ms/image | ultralytics ms/image | yolov12 images/s | "
          "ultralytics images/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        ours = runs.get(("yolov12", mode))
        theirs = runs.get(("ultralytics", mode))
        if not ours:
            continue
        o = statistics.median(ours)
        u = statistics.median(theirs) if theirs else None
        print(f"| {mode} | {o:.1f} | {u and f'{u:.1f}' or '-'} | {1000 / o:.1f} | "
              f"{u and f'{1000 / u:.1f}' or '-'} | {u and f'{u / o:.2f}x' or '-'} |")
    if args.out:
        from yolov12.bench.records import append_lines
        path = Path(args.out) / "predict_vs_ultralytics.jsonl"
        append_lines(path, records)  # whole or not at all
        print(f"\n{len(records)} records appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

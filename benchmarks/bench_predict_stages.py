"""The stage figures behind predict's defaults and its docs, on a CPU, in one run:

    python benchmarks/bench_predict_stages.py [--rounds 5] [--source DIR] [--out DIR]

* ``decode``: a 1080p JPEG read into uint8 pixels (``load_image`` + ``rgb8_array``), against
  the same with ``exif_transpose``'s copying default (what ``load_image`` did before) and with
  Pillow keeping 8 blocks of pixel memory for reuse (it keeps none by default; ``load_image``
  once set 8, which measured no faster here and was dropped);
* ``letterbox``: ``letterbox_u8`` (PyTorch's antialiased uint8 resize + pad) against Pillow's own
  ``Image.BILINEAR`` resize + pad, one thread (as a decode worker runs it);
* ``stream``: ``Predictor.stream`` over the folder at 1 and 2 model threads with 0, 1 or 2 decode
  workers: ms per image end to end and the forward's own time inside it (``Stats.infer``), beside
  the model alone at the same threads — ``pipeline.auto_workers``' reason for its choices.

Rounds interleave every setting, so that each sees the same machine; figures are medians over
rounds (and images). A randomly initialised YOLOv12-N stands in (speed does not depend on the
weights), ``imgsz`` 640, fp32, batch 1. Default source: the synthetic 1080p JPEGs of ``yolov12
bench suite=predict``. Records (one per figure, with the machine, its load during the run and
the commit) go to ``<out>/predict_stages.jsonl``; a table to stdout.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=None, help="folder of images (default: synthetic 1080p)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--out", default=None, help="folder for predict_stages.jsonl")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch
    from PIL import Image, ImageOps

    import yolov12.images as images
    from yolov12 import YOLOv12
    from yolov12.bench.predict_suite import _stage_times, images_in, synthetic
    from yolov12.bench.records import environment, summarize
    from yolov12.pipeline import Stats
    from yolov12.predict import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="yolov12-stages-"))
    runs: dict = {}
    loads = []
    settings = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 2)]  # (model threads, decode workers)
    try:
        folder = Path(args.source) if args.source else synthetic(tmp / "images")
        files = images_in(folder)
        pred = Predictor(YOLOv12("n").eval(), imgsz=args.imgsz, device="cpu")
        h, w = pred.input_shape(*images.load_image(files[0]).size[::-1])
        x = torch.rand(1, 3, h, w)
        for threads, workers in settings:  # warm-up: lazy set-up, caches, first-call costs
            torch.set_num_threads(threads)
            for _ in pred.stream(files[:2], workers=workers):
                pass

        def upright_by_copy(f):  # load_image as it was: exif_transpose's default copies
            with images.open_image(f) as im:
                im.load()
                return images.rgb8_array(ImageOps.exif_transpose(im))
        decoders = {"decode (load_image: upright in place)":
                    lambda f: images.rgb8_array(images.load_image(f)),
                    "decode, upright by a copy": upright_by_copy,
                    "decode, Pillow keeping 8 pixel blocks": None}
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}/{args.rounds} (load {loads[-1]:.1f})", flush=True)
            for name in (list(decoders) if r % 2 == 0 else list(decoders)[::-1]):
                blocks = Image.core.get_blocks_max()
                if decoders[name] is None:  # Pillow's block cache (it keeps none by default)
                    Image.core.set_blocks_max(8)
                try:
                    fn = decoders[name] or decoders["decode (load_image: upright in place)"]
                    runs.setdefault(name, []).extend(_ms(lambda: fn(f)) for f in files)
                finally:
                    Image.core.set_blocks_max(blocks)  # also frees the blocks above the count
            for k, v in _stage_times(files, args.imgsz).items():
                if k != "decode":
                    runs.setdefault(f"{k}, 1 thread", []).extend(v)
            for threads, workers in (settings if r % 2 == 0 else settings[::-1]):
                torch.set_num_threads(threads)
                with torch.inference_mode():
                    runs.setdefault(f"model alone, {threads} threads", []).extend(
                        _ms(lambda: pred.model(x)) for _ in range(4))
                stats = Stats()
                t0 = time.perf_counter()
                for _ in pred.stream(files, workers=workers, stats=stats):
                    pass
                wall = 1000 * (time.perf_counter() - t0) / len(files)
                key = f"{threads} threads, {workers} workers"
                runs.setdefault(f"stream per image, {key}", []).append(wall)
                runs.setdefault(f"forward inside the stream, {key}", []).append(
                    1000 * stats.infer / stats.pictures)
        loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    import PIL
    base = {"suite": "predict-stages", "name": "n", "dtype": "float32", "batch": 1,
            "shape": [h, w], "imgsz": args.imgsz, "images": len(files), "rounds": args.rounds,
            "source": str(args.source) if args.source else
            f"synthetic {len(files)} x 1920x1080 JPEG", "load_avg_1min": loads,
            "cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "pillow": PIL.__version__, **environment("cpu")}
    records = [{**base, "provider": name, "runs": len(v),
                **{k: round(t, 3) for k, t in summarize(v).items() if k.endswith("_ms")}}
               for name, v in runs.items()]
    print(f"\n{len(files)} images, {args.rounds} rounds, load average "
          f"{min(loads):.1f}-{max(loads):.1f}, commit {base['git']}")
    print("| figure | median ms | p20-p80 ms |\n|---|---|---|")
    for rec in records:
        print(f"| {rec['provider']} | {rec['median_ms']:.1f} | {rec['p20_ms']:.1f}-"
              f"{rec['p80_ms']:.1f} |")
    if args.out:
        from yolov12.bench.records import append_lines
        path = Path(args.out) / "predict_stages.jsonl"
        append_lines(path, records)  # whole or not at all
        print(f"\n{len(records)} records appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""COCO-style evaluation: run a predictor over a COCO-format dataset and score it with pycocotools.

``python -m yolov12 val --images val2017/ --annotations instances_val2017.json \\
--weights yolo12n.pt``

Works on any COCO-format dataset: class index i of the model is the i-th category id in ascending
order (for COCO itself that is the standard 80 -> 91 id map, ``coco.COCO80_TO_91``); images of any
size; images without annotations still count (their detections are false positives).

``evaluate(images_dir, annotations, predictor)`` is the library entry point; ``predictor`` is any
callable ``list[PIL.Image] -> list[Detections]`` (``predict.Predictor`` or a test stub).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import torch

# The 12 numbers COCOeval.summarize() prints, in the order of COCOeval.stats.
METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
           "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


class _Images(torch.utils.data.Dataset):
    """Decodes images (in DataLoader workers when ``workers`` > 0); returns (id, PIL image)."""

    def __init__(self, items):
        self.items = items  # [(image id, path)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from .predict import load_image
        image_id, path = self.items[i]
        return image_id, load_image(path)


def _collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def _aspect(path) -> float:
    from PIL import Image
    with Image.open(path) as im:  # reads the header only
        w, h = im.size
    return h / w


def evaluate(images_dir, annotations, predictor, batch: int = 8, out=None, workers: int = 0,
             limit: int | None = None, progress: bool = True, print_fn=print) -> dict:
    """Predict every image listed in ``annotations`` (found under ``images_dir``), write COCO
    results (to ``out`` if given) and return ``{metric: value}`` for the 12 COCO metrics plus
    ``"images"`` and ``"detections"`` counts.
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ValueError("annotations: COCO evaluation needs pycocotools "
                         "(pip install pycocotools)") from e
    from .coco import category_map

    images_dir, annotations = Path(images_dir), Path(annotations)
    if not images_dir.is_dir():
        raise ValueError(f"images_dir: not a directory: {str(images_dir)!r}")
    if not annotations.is_file():
        raise ValueError(f"annotations: no such file {str(annotations)!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected an int >= 1, got {batch!r}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools chatters on load
        gt = COCO(str(annotations))
    if not gt.dataset.get("categories"):
        raise ValueError(f"annotations: {annotations} lists no categories")
    cat_ids = category_map(gt.dataset["categories"])
    nc = len(getattr(predictor, "names", None) or cat_ids)
    if nc != len(cat_ids):  # allowed (a subset may be fine), but usually a wrong pairing
        print_fn(f"warning: the model has {nc} classes, {annotations.name} has {len(cat_ids)} "
                 "categories; class index i is scored as the i-th category id in ascending order")

    items, missing = [], []
    for img in sorted(gt.dataset.get("images", []), key=lambda d: d["id"]):
        path = images_dir / img["file_name"]
        (items if path.is_file() else missing).append((img["id"], path))
    if missing:
        raise ValueError(f"images_dir: {len(missing)} of {len(items) + len(missing)} images listed "
                         f"in the annotations are not in {images_dir} (e.g. {missing[0][1].name})")
    if not items:
        raise ValueError(f"annotations: {annotations} lists no images")
    if limit is not None:
        items = items[:limit]
    # batches of similar aspect ratio pad less (each batch is padded to its largest image)
    items.sort(key=lambda it: _aspect(it[1]))

    loader = torch.utils.data.DataLoader(_Images(items), batch_size=batch, shuffle=False,
                                         num_workers=workers, collate_fn=_collate)
    if progress:
        try:
            from tqdm import tqdm
            loader = tqdm(loader, desc="val", unit="batch")
        except ImportError:
            pass
    results, bad_labels = [], set()
    for ids, images in loader:
        dets = predictor(images)
        if len(dets) != len(images):
            raise ValueError(f"predictor: returned {len(dets)} results for {len(images)} images")
        for image_id, det in zip(ids, dets):
            for (x1, y1, x2, y2), score, label in zip(det.boxes.tolist(), det.scores.tolist(),
                                                      det.labels.tolist()):
                label = int(label)
                if not 0 <= label < len(cat_ids):
                    bad_labels.add(label)
                    continue
                results.append({"image_id": image_id, "category_id": cat_ids[label],
                                "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3),
                                         round(y2 - y1, 3)],
                                "score": round(float(score), 5)})
    if bad_labels:
        raise ValueError(f"predictor: class indices {sorted(bad_labels)[:10]} outside the "
                         f"{len(cat_ids)} categories of {annotations.name}; the model's classes do "
                         "not match this dataset")
    if out is not None:
        os.makedirs(Path(out).parent or ".", exist_ok=True)
        with open(out, "w") as fh:
            json.dump(results, fh)
        print_fn(f"wrote {len(results)} detections to {out}")

    metrics = {"images": len(items), "detections": len(results)}
    if not results:  # loadRes cannot take an empty list; nothing detected scores zero
        print_fn("no detections: every metric is 0")
        metrics.update({m: 0.0 for m in METRICS})
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
    ev = COCOeval(gt, dt, "bbox")
    ev.params.imgIds = [i for i, _ in items]  # only what was run (matters with --limit)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    print_fn(buf.getvalue().rstrip())
    # pycocotools reports -1 for an area range with no ground truth; keep it, it is not a score
    metrics.update({m: float(v) for m, v in zip(METRICS, ev.stats)})
    return metrics


def add_parser(sub) -> None:
    from .predict import add_model_args
    p = sub.add_parser("val", help="COCO mAP of a model on a COCO-format dataset (pycocotools)")
    p.add_argument("--images", required=True, help="directory of the images (e.g. val2017/)")
    p.add_argument("--annotations", required=True,
                   help="COCO-format json (e.g. annotations/instances_val2017.json)")
    add_model_args(p)
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--imgsz", type=int, default=640, help="long side of the input (default 640)")
    p.add_argument("--conf", type=float, default=0.001,
                   help="score threshold (default 0.001, the usual for mAP)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--max-det", type=int, default=300, help="boxes per image at most")
    p.add_argument("--out", default="results.json", help="COCO results file (default results.json)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="image-decoding worker processes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    p.add_argument("--backend", default="auto", help="attention backend (default auto)")
    p.set_defaults(func=run)


def run(args) -> int:
    from .predict import Predictor, model_from_args, pick_device
    model = model_from_args(args, "val").fuse().set_attention_backend(args.backend)
    predictor = Predictor(model, args.imgsz, args.conf, args.iou, args.max_det, multi_label=True,
                          device=pick_device(args.device), half=args.half)
    try:
        metrics = evaluate(args.images, args.annotations, predictor, batch=args.batch,
                           out=args.out, workers=args.workers, limit=args.limit)
    except ValueError as e:
        raise SystemExit(f"val: {e}") from e
    print(f"mAP50-95 {metrics['AP']:.4f}  mAP50 {metrics['AP50']:.4f}  "
          f"on {metrics['images']} images ({metrics['detections']} detections)")
    return 0

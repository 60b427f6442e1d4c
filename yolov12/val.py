"""COCO-style evaluation: run a predictor over a COCO-format dataset and score it with pycocotools.

``yolov12 val --images val2017/ --annotations instances_val2017.json --weights yolo12n.pt``, or
``yolov12 val model=yolo12n.pt data=coco.yaml``; under ``torchrun`` the batches are shared out
across processes (``distributed.py``) with exactly the single-process metrics.

Works on any COCO-format dataset: class index i of the model is the i-th category id in ascending
order (for COCO itself that is the standard 80 -> 91 id map, ``coco.COCO80_TO_91``); images of any
size; images without annotations still count (their detections are false positives).

``evaluate(images_dir, annotations, predictor)`` is the library entry point; ``predictor`` is any
callable ``list[PIL.Image] -> list[Detections]`` (``predict.Predictor`` or a test stub). Images
are decoded (and, for a ``Predictor``, letterboxed) in worker threads while the model runs the
previous batch: the pipeline of ``yolov12.pipeline``, as in predict.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

from . import distributed
from .cli_args import (
    add_backend_arg,
    add_model_args,
    add_threads_arg,
    apply_threads,
    check_backend,
    check_half,
    model_from_args,
    one_imgsz,
    pick_device,
)
from .coco import category_map, class_names
from .distributed import Context
from .images import open_image
from .outputs import check_file, writing
from .predict import Predictor, load_image

# The 12 numbers COCOeval.summarize() prints, in the order of COCOeval.stats.
METRICS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
           "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


def _batches(items, batch: int, predictor, workers: int | None):
    """(image ids, per image its ``Detections`` or the error message) for ``items`` [(id, path)],
    ``batch`` images at a time, in order. Files are decoded in ``workers`` threads ahead of the
    model (``pipeline.prefetch``); with a ``Predictor`` they are letterboxed there too and run
    through its pipeline loop. A file that cannot be read is its message: skipped and reported
    at the end, not raised inside a worker."""
    from functools import partial

    from .pipeline import Job, auto_workers, batches, prefetch, prepare
    jobs = (Job(k, str(path), partial(load_image, path), key=image_id)
            for k, (image_id, path) in enumerate(items))
    if isinstance(predictor, Predictor):
        workers = auto_workers(predictor.device) if workers is None else workers
        done = ((f.job.key, det.error or det) for f, det in predictor.run_jobs(jobs, batch, workers))
    else:  # any callable list[PIL image] -> list[Detections]
        def run(group):
            images = [f.image for f in group if f.error is None]
            result = predictor(images) if images else []
            if result is None or len(result) != len(images):
                raise ValueError(f"predictor: returned {'None' if result is None else len(result)}"
                                 f" results for {len(images)} images")
            dets = iter(result)
            return [(f.job.key, f.error if f.error is not None else next(dets)) for f in group]
        frames = prefetch(jobs, partial(prepare, imgsz=None, shape=None, keep_image=True,
                                        letterbox=False), 2 if workers is None else workers)
        done = (r for group in batches(frames, batch) for r in run(group))
    pending = []
    for item in done:
        pending.append(item)
        if len(pending) == batch:
            yield [k for k, _ in pending], [r for _, r in pending]
            pending = []
    if pending:
        yield [k for k, _ in pending], [r for _, r in pending]


def _aspect(path) -> float:
    try:
        with open_image(path) as im:  # reads the header only
            w, h = im.size
    except ValueError:  # unreadable: the loader reports it, with the others
        return 0.0
    return h / w


def _fail(path, msg):
    raise ValueError(f"annotations: {path}: {msg}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v) -> bool:
    return _is_number(v) and math.isfinite(v)


def load_annotations(path, print_fn=print) -> dict:
    """The COCO-format dataset in ``path``, checked field by field so that a malformed file fails
    here with the file, the entry and the field named, not deep inside pycocotools.

    Required: a top-level object with non-empty ``images`` (``id``, ``file_name``),
    ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox`` [x, y, w, h]) and
    ``categories`` (``id``) lists, unique ids, and annotations that refer to listed images and
    categories. Optional, filled in with one note: ``iscrowd`` (0) and ``area`` (the box's w*h; COCO
    stores the mask area there, which sets the small/medium/large split).
    """
    path = Path(path)
    try:
        with open(path) as fh:
            d = json.load(fh)
    except json.JSONDecodeError as e:
        _fail(path, f"not valid JSON ({e})")
    except UnicodeDecodeError as e:
        _fail(path, f"not a text (JSON) file ({e})")
    if not isinstance(d, dict):
        _fail(path, f"the top level is a JSON {type(d).__name__}; a COCO file is an object "
                    '{"images": [...], "annotations": [...], "categories": [...]}')
    for key in ("images", "annotations", "categories"):
        if key not in d:
            _fail(path, f"no {key!r} list (found keys {sorted(d)}); a COCO detection file has "
                        "'images', 'annotations' and 'categories'")
        if not isinstance(d[key], list):
            _fail(path, f"{key!r} is a {type(d[key]).__name__}, expected a list")
        if not d[key]:
            what = "nothing to score" if key == "annotations" else "nothing to evaluate"
            _fail(path, f"{key!r} is empty: {what}")

    def entries(key, required):
        for i, e in enumerate(d[key]):
            if not isinstance(e, dict):
                _fail(path, f"{key}[{i}] is a {type(e).__name__}, expected an object")
            for field, ok, want in required:
                if field not in e:
                    _fail(path, f"{key}[{i}] has no {field!r}")
                if not ok(e[field]):
                    _fail(path, f"{key}[{i}].{field} is {e[field]!r}, expected {want}")
            yield i, e

    def unique_ids(key):
        seen = set()
        for i, e in enumerate(d[key]):
            if e["id"] in seen:
                _fail(path, f"{key}[{i}].id {e['id']!r} is used twice")
            seen.add(e["id"])
        return seen

    is_int = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
    list(entries("images", [("id", *is_int), ("file_name", lambda v: isinstance(v, str) and v,
                                               "a file name")]))
    list(entries("categories", [("id", *is_int)]))
    image_ids, cat_ids = unique_ids("images"), unique_ids("categories")
    files = Counter(e["file_name"] for e in d["images"])
    twice = sorted(f for f, n in files.items() if n > 1)
    if twice:  # legal for pycocotools, but each id runs and is scored: usually a merge gone wrong
        print_fn(f"warning: {path.name}: {len(twice)} file name(s) listed under several image ids "
                 f"(e.g. {twice[0]!r}, {files[twice[0]]} times): each id is predicted and scored")
    box_ok = (lambda b: isinstance(b, list) and len(b) == 4 and all(map(_is_finite, b))
              and b[2] >= 0 and b[3] >= 0, "[x, y, width, height], finite numbers, with width, "
              "height >= 0")
    filled = set()
    for i, a in entries("annotations", [("id", *is_int), ("image_id", *is_int),
                                        ("category_id", *is_int), ("bbox", *box_ok)]):
        if a["image_id"] not in image_ids:
            _fail(path, f"annotations[{i}].image_id {a['image_id']} is not in 'images'")
        if a["category_id"] not in cat_ids:
            _fail(path, f"annotations[{i}].category_id {a['category_id']} is not in "
                        f"'categories' (ids {sorted(cat_ids)[:20]})")
        if "area" not in a:
            a["area"] = float(a["bbox"][2] * a["bbox"][3])
            filled.add("'area' as the box area w*h")
        elif not _is_finite(a["area"]):
            _fail(path, f"annotations[{i}].area is {a['area']!r}, expected a number")
        if "iscrowd" not in a:
            a["iscrowd"] = 0
            filled.add("'iscrowd' as 0")
    unique_ids("annotations")
    if filled:
        print_fn(f"note: {path.name}: annotations without {' / '.join(sorted(filled))} "
                 "are filled in")
    return d


def _norm(name) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def class_to_category(names: dict | None, nc: int, categories: list[dict],
                      source: str) -> tuple[dict[int, int], str | None]:
    """{class index: category id} for a model of ``nc`` classes named ``names`` on a dataset of
    ``categories``, and a line to print about the pairing (None when there is nothing to say).
    Decided before any image is read.

    * By name, when the dataset's categories all have names and each is one of the model's class
      names (case, ``_`` and spaces aside; the model's names not mere indices): an 80-class COCO
      model on a dataset of a few COCO classes scores those, and its other classes' boxes are
      not scored.
    * Otherwise by position: class i is the i-th category id in ascending order (COCO's 80 -> 91
      map for COCO itself). A model with more classes than the dataset has categories is refused
      (``ValueError``): its extra classes would have no category, and the pairing is almost surely
      wrong (the run used to predict every image and fail at the end). Fewer classes than
      categories: scored, with a warning.
    """
    ids = category_map(categories)
    by_position = {i: c for i, c in enumerate(ids[:nc])}
    model = {_norm(v): int(k) for k, v in (names or {}).items()}
    cats = {_norm(c.get("name", "")): int(c["id"]) for c in categories}
    if (names and len(model) == len(names) and len(cats) == len(categories) and "" not in cats
            and not all(k.isdigit() for k in model) and set(cats) <= set(model)):
        by_name = {model[n]: cid for n, cid in cats.items()}
        if by_name == by_position:
            return by_name, None
        if len(by_name) < nc:
            return by_name, (f"note: {source}: its {len(cats)} categories are scored by name; "
                             f"boxes of the model's other {nc - len(by_name)} classes are not "
                             "scored")
        return by_name, (f"note: {source}: categories matched to the model's classes by name "
                         "(their id order differs from the model's class order)")
    if nc > len(ids):
        raise ValueError(f"model: {nc} classes, but {source} has {len(ids)} categories whose "
                         "names are not among the model's class names: class index i is scored "
                         f"as the i-th category id, so classes {len(ids)}..{nc - 1} would have "
                         "none; evaluate a model trained on this dataset")
    if nc < len(ids):  # allowed (a subset may be fine), but usually a wrong pairing
        return by_position, (f"warning: the model has {nc} classes, {source} has {len(ids)} "
                             "categories; class index i is scored as the i-th category id in "
                             "ascending order")
    return by_position, None


def check_dataset(images_dir, annotations, print_fn=print) -> tuple[dict, list]:
    """The annotations (``load_annotations``, checked) and [(image id, path)] of every image they
    list, sorted by id, after checking that each file is under ``images_dir``: what ``evaluate``
    needs before it reads a pixel; ``yolov12 val`` calls it before the model is built."""
    images_dir, annotations = Path(images_dir), Path(annotations)
    if not images_dir.is_dir():
        raise ValueError(f"images_dir: not a directory: {str(images_dir)!r}")
    if not annotations.is_file():
        raise ValueError(f"annotations: no such file {str(annotations)!r}")
    d = load_annotations(annotations, print_fn)
    items, missing = [], []
    for img in sorted(d["images"], key=lambda e: e["id"]):
        path = images_dir / img["file_name"]
        (items if path.is_file() else missing).append((img["id"], path))
    if missing:
        raise ValueError(f"images_dir: {len(missing)} of {len(items) + len(missing)} images listed "
                         f"in the annotations are not in {images_dir} (e.g. {missing[0][1].name})")
    return d, items


def evaluate(images_dir, annotations, predictor, batch: int = 8, out=None,
             workers: int | None = None,
             limit: int | None = None, progress: bool = True, print_fn=print,
             ctx=None, dataset: tuple[dict, list] | None = None) -> dict | None:
    """Predict every image listed in ``annotations`` (found under ``images_dir``), write COCO
    results (to ``out`` if given) and return ``{metric: value}`` for the 12 COCO metrics plus
    ``"images"`` and ``"detections"`` counts and ``"skipped"``: the files that could not be read
    (corrupt, truncated, not an image), left out of the run and of the metrics, which then cover
    the other images, and listed with a warning at the end.

    ``ctx`` (a ``distributed.Context``): run this process's share of the batches; rank 0 gathers
    every share, writes ``out`` and returns the metrics, the other ranks return None.
    ``dataset``: what ``check_dataset(images_dir, annotations)`` returned, when the caller
    already checked it. Class indices map to category ids by ``class_to_category``, decided
    before any image is read. ``out`` is written whole or not at all (``outputs.writing``).
    """
    ctx = ctx or Context()
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise ValueError("annotations: COCO evaluation needs pycocotools "
                         "(pip install pycocotools)") from e

    images_dir, annotations = Path(images_dir), Path(annotations)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: expected an int >= 1, got {batch!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 0):
        raise ValueError(f"workers: expected None or a number of decoding threads >= 0, got "
                         f"{workers!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit: expected a positive number of images, got {limit!r}")
    d, items = dataset or check_dataset(images_dir, annotations, print_fn)
    gt = COCO()
    gt.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools chatters
        gt.createIndex()
    names = getattr(predictor, "names", None)
    nc = len(names or d["categories"])
    cat_of, note = class_to_category(names, nc, d["categories"], annotations.name)
    some_classes_unscored = len(cat_of) < nc  # by name, on a dataset of a few of the classes
    if note:
        print_fn(note)
    items = list(items)
    if limit is not None:
        items = items[:limit]
    # batches of similar aspect ratio hold one input shape, so they run as one forward (the
    # predictor runs each input shape of a batch separately: batching never changes results)
    items.sort(key=lambda it: _aspect(it[1]))

    # this process's batches: the single-process batches, dealt out whole (distributed.py)
    batches = [items[i:i + batch] for i in range(0, len(items), batch)]
    mine = ctx.my_batches(len(batches))
    share = [it for b in mine for it in batches[b]]
    # decode (+ letterbox, for a Predictor) in worker threads while the model runs the batch
    # before (yolov12.pipeline); a stub predictor gets the decoded images
    loader = _batches(share, batch, predictor, workers)
    bar = None
    if progress and ctx.main:
        try:
            from tqdm import tqdm
            # counted in images and updated by hand: a bar wrapped around the loader inside zip()
            # is never told about the last batch and ends one short (0/1 on a small set)
            bar = tqdm(total=len(share), unit="img",
                       desc="val" if ctx.world == 1 else f"val (rank 0 of {ctx.world})")
        except ImportError:
            pass
    per_batch, bad_labels, unreadable = [], set(), []
    paths = dict(items)
    try:
        for b, (ids, results) in zip(mine, loader):
            readable = [(i, r) for i, r in zip(ids, results) if not isinstance(r, str)]
            unreadable += [(str(paths[i]), r) for i, r in zip(ids, results) if isinstance(r, str)]
            dets = [r for _, r in readable]
            found = []
            for (image_id, _), det in zip(readable, dets):
                if not all(hasattr(det, a) for a in ("boxes", "scores", "labels")):
                    raise ValueError(f"predictor: returned {type(det).__name__} for "
                                     f"{paths[image_id].name}, expected Detections (boxes, "
                                     "scores, labels)")
                for (x1, y1, x2, y2), score, label in zip(det.boxes.tolist(), det.scores.tolist(),
                                                          det.labels.tolist()):
                    label = int(label)
                    if label not in cat_of:
                        if not some_classes_unscored:  # a class index the model does not have
                            bad_labels.add(label)
                        continue
                    found.append({"image_id": image_id, "category_id": cat_of[label],
                                  "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3),
                                           round(y2 - y1, 3)],
                                  "score": round(float(score), 5)})
            per_batch.append((b, found))
            if bar is not None:
                bar.update(len(ids))
    finally:
        if bar is not None:
            bar.close()
    shares = ctx.gather((per_batch, sorted(bad_labels), unreadable))
    if not ctx.main:
        return None
    bad_labels = {label for _, labels, _ in shares for label in labels}
    unreadable = sorted(u for *_, bad in shares for u in bad)
    batches_found = sorted((b for share, *_ in shares for b in share), key=lambda t: t[0])
    results = [r for _, found in batches_found for r in found]
    if bad_labels:
        raise ValueError(f"predictor: class indices {sorted(bad_labels)[:10]} outside the "
                         f"{len(cat_of)} categories of {annotations.name}; the model's classes do "
                         "not match this dataset")
    if len(unreadable) == len(items):
        raise ValueError(f"images_dir: none of the {len(items)} images could be read (e.g. "
                         f"{unreadable[0][1]})")
    if out is not None:  # whole or not at all; an OSError becomes one line (OutputError)
        with writing(out) as tmp, open(tmp, "w") as fh:
            json.dump(results, fh)
        print_fn(f"wrote {len(results)} detections to {out}")
    if unreadable:
        print_fn(f"warning: {len(unreadable)} of {len(items)} images could not be read and were "
                 f"skipped; the metrics cover the other {len(items) - len(unreadable)}:")
        for _, why in unreadable[:20]:
            print_fn(f"  {why}")
        if len(unreadable) > 20:
            print_fn(f"  ... and {len(unreadable) - 20} more")
    skipped = {p for p, _ in unreadable}
    items = [(i, p) for i, p in items if str(p) not in skipped]

    metrics = {"images": len(items), "detections": len(results),
               "skipped": [p for p, _ in unreadable]}
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


def _read_yaml(path: Path) -> dict:
    """A dataset YAML's top-level keys. PyYAML when installed (the ``val`` extra brings it);
    otherwise the flat ``key: value`` lines and one-line ``[a, b]`` lists (all that locating the
    validation images needs: ``path`` and ``val``), a list left open refused as PyYAML would."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"data: {path} is not a text (YAML) file ({e.reason})") from None
    try:
        import yaml
    except ImportError:
        out = {}
        for n, line in enumerate(text.splitlines(), 1):
            m = re.match(r"^([A-Za-z_]\w*):\s*(.*?)\s*(#.*)?$", line)
            if not (m and m.group(2)):
                continue
            value = m.group(2)
            if value.startswith("["):
                if not value.endswith("]"):
                    raise ValueError(f"data: {path} is not valid YAML at line {n}, column "
                                     f"{m.start(2) + 1}: '[' not closed on its line (read "
                                     "without PyYAML: one-line lists only)")
                value = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
            else:
                value = value.strip("'\"")
            out[m.group(1)] = value
        return out
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:  # where and what, in one line (PyYAML's text spans several)
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"data: {path} is not valid YAML{where}: {what}") from None
    return d if isinstance(d, dict) else {}


def resolve_data(data, images=None, annotations=None) -> tuple[Path, Path]:
    """(images directory, COCO json) from ``data``: an ultralytics dataset YAML (coco.yaml: its
    ``path`` and ``val`` entries give the images; the json is looked for where ultralytics' COCO
    download puts it, ``<path>/annotations/instances_<val name>.json``) or a COCO json itself.
    ``images`` / ``annotations`` given explicitly take precedence."""
    data = Path(data)
    if data.suffix == ".json":
        if images is None:
            raise ValueError(f"data: {data} is a COCO json; give the images folder too "
                             "(--images DIR or images=DIR)")
        return Path(images), Path(annotations or data)
    if not data.is_file():
        raise ValueError(f"data: no such file {str(data)!r} (ultralytics resolves its built-in "
                         "dataset names; here give the dataset YAML file, or --images DIR "
                         "--annotations FILE)")
    d = _read_yaml(data)
    root = Path(d.get("path") or data.parent)
    if not root.is_absolute():
        root = (data.parent / root) if (data.parent / root).exists() else root
    val = d.get("val")
    if isinstance(val, list):
        val = val[0] if val else None
    if not isinstance(val, str) or not val:
        raise ValueError(f"data: {data} has no 'val' entry (the validation images)")
    val_path = root / val
    if images is None:
        if val_path.is_dir():
            images = val_path
        elif val_path.suffix == ".txt" and val_path.is_file():  # a list of image paths
            first = next((ln.strip() for ln in val_path.read_text().splitlines() if ln.strip()),
                         None)
            if first is None:
                raise ValueError(f"data: {val_path} lists no images")
            images = (root / first).parent
        else:
            raise ValueError(f"data: {data}: val {val!r} is neither a folder nor an image list "
                             f"under {root}")
    if annotations is None:
        stem = Path(val).stem  # val2017 for images/val2017 and val2017.txt alike
        annotations = root / "annotations" / f"instances_{stem}.json"
        if not annotations.is_file():
            raise ValueError(f"data: {data}: no COCO json at {annotations} (yolov12 val scores "
                             "with pycocotools against COCO-format json, not YOLO txt labels); "
                             "give --annotations FILE")
    return Path(images), Path(annotations)


def add_parser(sub) -> None:
    p = sub.add_parser("val", help="COCO mAP of a model on a COCO-format dataset (pycocotools)")
    p.add_argument("--images", default=None, help="directory of the images (e.g. val2017/)")
    p.add_argument("--annotations", default=None,
                   help="COCO-format json (e.g. annotations/instances_val2017.json)")
    p.add_argument("--data", default=None,
                   help="instead of --images/--annotations: an ultralytics dataset YAML "
                        "(coco.yaml; the json is taken from <path>/annotations/) or a COCO json")
    add_model_args(p)
    p.add_argument("--batch", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--imgsz", type=int, nargs="+", default=None,
                   help="long side of the input (default 640, or the size a static .onnx takes)")
    p.add_argument("--conf", type=float, default=0.001,
                   help="score threshold (default 0.001, the usual for mAP)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--max-det", type=int, default=300, help="boxes per image at most")
    p.add_argument("--out", default="results.json", help="COCO results file (default results.json)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--workers", type=int, default=None,
                   help="threads that decode and letterbox images while the model runs "
                        "(default: 2 on a GPU; on a CPU the cores the model's threads leave "
                        "free, at most 2 — 0 when they fill the cores: decoding then runs in "
                        "turn with the model)")
    add_threads_arg(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or N (default: cuda when "
                   "present)")
    p.add_argument("--half", action="store_true", help="float16 (CUDA only)")
    add_backend_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    """Everything that can be checked is checked before the model is built: options, the output
    file, the annotations and the images they list, the model's classes against the dataset's
    categories (``class_to_category``)."""
    args.imgsz = one_imgsz(args.imgsz, "val")
    if args.limit is not None and args.limit < 1:
        raise SystemExit(f"--limit: expected a positive number of images, got {args.limit}")
    for flag, v in (("--batch", args.batch), ("--max-det", args.max_det)):
        if v < 1:
            raise SystemExit(f"{flag}: expected a value >= 1, got {v}")
    if args.workers is not None and args.workers < 0:
        raise SystemExit(f"--workers: expected a number of decoding threads >= 0 (0: decode in "
                         f"turn with the model), got {args.workers}")
    if args.data is not None:
        try:
            args.images, args.annotations = resolve_data(args.data, args.images, args.annotations)
        except ValueError as e:
            raise SystemExit(f"--{e}") from e
    if args.images is None or args.annotations is None:
        raise SystemExit("val: give --images DIR and --annotations FILE (or --data coco.yaml)")
    check_file(args.out, "--out", "results.json")
    apply_threads(args)
    ctx = distributed.setup(args.device)  # torchrun: join the group; else one process
    say = print if ctx.main else (lambda *_: None)
    try:
        device = pick_device(distributed.device_for(ctx, args.device))
        check_half(args.half, device)
        check_backend(args.backend, device, args.half)
        try:
            dataset = check_dataset(args.images, args.annotations, say)
        except ValueError as e:
            raise SystemExit(f"val: {e}") from e
        model = model_from_args(args, "val")
        net = getattr(model, "net", model)
        try:  # the classes against the categories, before the model is prepared or an image read
            class_to_category(class_names(net.nc, getattr(net, "names", None)), net.nc,
                              dataset[0]["categories"], Path(args.annotations).name)
            predictor = Predictor(model, args.imgsz, args.conf, args.iou, args.max_det,
                                  multi_label=True, device=device, half=args.half,
                                  backend=args.backend)
            metrics = evaluate(args.images, args.annotations, predictor, batch=args.batch,
                               out=args.out, workers=args.workers, limit=args.limit, ctx=ctx,
                               progress=not args.no_progress, print_fn=say, dataset=dataset)
        except ValueError as e:
            raise SystemExit(f"val: {e}") from e
        except KeyboardInterrupt:
            if ctx.world > 1:
                raise
            # partial metrics would mislead (they cover whichever images ran first): nothing is
            # written; --limit scores a subset on purpose
            print("\nval: interrupted; no results written (--limit N scores the first N images)",
                  file=sys.stderr)
            return 130
        if not ctx.main:
            return 0
        skipped = len(metrics["skipped"])
        print(f"mAP50-95 {metrics['AP']:.4f}  mAP50 {metrics['AP50']:.4f}  "
              f"on {metrics['images']} images ({metrics['detections']} detections)"
              + (f", {ctx.world} processes" if ctx.world > 1 else "")
              + (f"; {skipped} unreadable image(s) skipped, listed above" if skipped else ""))
        return 1 if skipped else 0
    finally:
        ctx.close()

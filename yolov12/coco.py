"""The COCO classes: the 80 names models are trained on and their category ids in COCO's json.

COCO's annotation files number categories 1..90 with gaps (ids 12, 26, 29, 30, 45, 66, 68, 69, 71,
83 were dropped), while detectors output a dense class index 0..79. ``COCO80_TO_91[i]`` is the
category id of class index i.
"""
from __future__ import annotations

NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

_DROPPED = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO80_TO_91 = tuple(i for i in range(1, 91) if i not in _DROPPED)

assert len(NAMES) == len(COCO80_TO_91) == 80


def class_names(nc: int, names: dict | None = None) -> dict[int, str]:
    """Names for class indices 0..nc-1: the model's own if it has them, COCO's for nc=80, else
    the index as a string."""
    if names and len(names) == nc:
        return {int(k): str(v) for k, v in names.items()}
    if nc == len(NAMES):
        return dict(enumerate(NAMES))
    return {i: str(i) for i in range(nc)}


def category_map(coco_categories: list[dict]) -> list[int]:
    """Category id for each class index: the dataset's category ids in ascending order.

    For COCO (instances_val2017.json) this is exactly ``COCO80_TO_91``; for any other COCO-format
    dataset it is the usual convention (class index i = the i-th category id in ascending order).
    """
    ids = sorted(int(c["id"]) for c in coco_categories)
    if len(set(ids)) != len(ids):
        raise ValueError(f"annotations: duplicate category ids in {ids}")
    return ids

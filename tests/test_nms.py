"""NMS (``yolov12.predict.nms`` / ``batched_nms``) on the cases random boxes never produce: an IoU
exactly at the threshold (kept: torchvision suppresses only IoU > threshold), identical boxes,
zero-area boxes, classes that must not suppress each other whatever their coordinates, and
``max_det`` cutting through equal scores. Every case is checked against a brute-force NMS written
here from the definition, in exact rational arithmetic (so a tie is a tie), not from the code.

Coordinates are small integers or quarters (exact in float32, also after the class shift of
``batched_nms``), so the float32 code and the exact reference see the same IoU.
"""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from yolov12.predict import batched_nms, nms


def iou_exact(a, b) -> Fraction:
    """|A ∩ B| / |A ∪ B| of two xyxy boxes, exactly; 0 when the union is empty (zero-area boxes
    cover nothing, so they overlap nothing)."""
    a, b = [Fraction(v) for v in a], [Fraction(v) for v in b]
    area = lambda r: max(r[2] - r[0], 0) * max(r[3] - r[1], 0)  # noqa: E731
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = iw * ih
    union = area(a) + area(b) - inter
    return inter / union if union else Fraction(0)


def nms_by_definition(boxes, scores, labels, thr, max_det=None) -> list[int]:
    """Greedy NMS as defined: take boxes by decreasing score (equal scores: lower index first), keep
    one unless a kept box of its class overlaps it with IoU > thr; the first max_det kept."""
    thr = Fraction(thr)
    keep = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(labels[i] != labels[j] or iou_exact(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep[:max_det]


def check(boxes, scores, labels, thr, max_det=None) -> list[int]:
    """Both entry points (plain NMS on one class, class-aware NMS) against the definition; returns
    the kept indices."""
    b = torch.tensor(boxes, dtype=torch.float32)
    s = torch.tensor(scores, dtype=torch.float32)
    lab = torch.tensor(labels, dtype=torch.long)
    # the exact values the code sees (float32), so the reference and the code judge the same boxes
    bx, sc = b.double().tolist(), s.double().tolist()
    want = nms_by_definition(bx, sc, labels, thr, max_det)
    got = batched_nms(b, s, lab, thr, use_torchvision=False, max_det=max_det).tolist()
    assert got == want, (got, want)
    if len(set(labels)) == 1:
        assert nms(b, s, thr, max_det).tolist() == want
    return want


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("thr,kept", [(0.5, [0, 1]), (0.49, [0])])
def test_iou_exactly_at_the_threshold_is_kept(thr, kept):
    """[0,0,3,1] and [1,0,4,1]: intersection 2, union 4, IoU exactly 0.5. At threshold 0.5 both
    stay (suppressed only when IoU > threshold); just below it the second goes."""
    assert iou_exact([0, 0, 3, 1], [1, 0, 4, 1]) == Fraction(1, 2)
    assert check([[0, 0, 3, 1], [1, 0, 4, 1]], [0.9, 0.8], [0, 0], thr) == kept


def test_ties_at_several_thresholds_and_in_quarters():
    """IoU 1/3, 2/3 and 1/4 exactly, with quarter-pixel coordinates: kept at equality."""
    cases = [([0, 0, 2, 1], [1, 0, 3, 1], Fraction(1, 3)),
             ([0, 0, 5, 1], [1, 0, 6, 1], Fraction(2, 3)),
             ([0, 0, 1.25, 0.5], [0.75, 0, 2.0, 0.5], Fraction(1, 4))]
    for a, b, iou in cases:
        assert iou_exact(a, b) == iou
        t = float(iou)
        # the float threshold is the nearest double to the fraction; the code compares float32
        # IoUs with it: take the exact float32 tie the code computes as the threshold
        t32 = torch.tensor(t, dtype=torch.float32).item()
        kept = check([a, b], [0.9, 0.8], [0, 0], t32)
        assert kept == ([0, 1] if Fraction(t32) >= iou else [0]), (a, b, t32)


@pytest.mark.parametrize("thr,kept", [(0.7, [1]), (1.0, [1, 2, 0])])
def test_identical_boxes(thr, kept):
    """Identical boxes (IoU 1): the best one survives below threshold 1, all at 1 (1 is not > 1)."""
    assert check([[10, 10, 20, 30]] * 3, [0.5, 0.9, 0.7], [0, 0, 0], thr) == kept


def test_zero_area_boxes_neither_suppress_nor_are_suppressed():
    """Points and lines (zero area) overlap nothing: kept, also identical ones and ones lying inside
    a box, and they suppress nothing."""
    boxes = [[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10], [2, 3, 8, 3], [0, 0, 10, 10]]
    scores = [0.9, 0.8, 0.7, 0.95, 0.6]
    assert check(boxes, scores, [0] * 5, 0.5) == [3, 0, 1, 2]
    assert check(boxes, scores, [0] * 5, 0.0) == [3, 0, 1, 2]  # IoU 0 is not > 0


def test_threshold_zero_keeps_touching_boxes():
    """Boxes sharing an edge have IoU 0: kept even at threshold 0; any overlap suppresses."""
    boxes = [[0, 0, 2, 2], [2, 0, 4, 2], [3, 1, 5, 3]]
    assert check(boxes, [0.9, 0.8, 0.7], [0, 0, 0], 0.0) == [0, 1]


def test_classes_never_suppress_each_other():
    """Identical boxes in different classes all survive; the exact tie inside class 79 among 80
    classes, at pixel coordinates near 640 (where the class shift of batched_nms is largest),
    still counts as a tie; a box of another class in between changes nothing."""
    tie = [[600, 300, 603, 301], [601, 300, 604, 301]]
    boxes = [[0, 0, 640, 640]] * 3 + tie + [[600, 300, 603, 301]] + [[-8, -8, -4, -4]] * 2
    labels = [0, 1, 79, 79, 79, 3, 0, 2]
    scores = [0.5, 0.5, 0.5, 0.9, 0.8, 0.95, 0.4, 0.3]
    kept = check(boxes, scores, labels, 0.5)
    assert sorted(kept) == list(range(8)), kept  # nothing overlaps above 0.5 inside a class
    dup = check(boxes + [[601, 300, 604, 301]], scores + [0.75], labels + [79], 0.5)
    assert dup == kept  # a box identical to one of the tie, scored lower: suppressed by it


@pytest.mark.parametrize("max_det", [1, 2, 3, 5, 100])
def test_max_det_with_equal_scores_keeps_the_lowest_indices_first(max_det):
    """Equal scores are taken in index order (a stable sort), so max_det cuts the same boxes every
    run; suppressed ones do not count towards it."""
    boxes = [[0, 0, 4, 4], [0, 0, 4, 4], [10, 0, 14, 4], [20, 0, 24, 4], [10, 0, 14, 4],
             [30, 0, 34, 4]]
    scores = [0.5] * 6
    for labels in ([0] * 6, [0, 1, 0, 1, 0, 1]):
        want = nms_by_definition(boxes, scores, labels, 0.5)[:max_det]
        assert check(boxes, scores, labels, 0.5, max_det) == want
    assert check(boxes, scores, [0] * 6, 0.5, max_det) == [0, 2, 3, 5][:max_det]


def test_random_boxes_on_a_coarse_grid_match_the_definition():
    """Many boxes on a 1-pixel grid: exact ties (shared edges, equal IoUs, equal scores) happen
    often, unlike with continuous random boxes."""
    g = torch.Generator().manual_seed(17)
    for thr in (0.25, 1 / 3, 0.5, 2 / 3):
        xy = torch.randint(0, 12, (120, 2), generator=g)
        wh = torch.randint(0, 5, (120, 2), generator=g)  # zero widths included
        boxes = torch.cat((xy, xy + wh), 1).tolist()
        scores = (torch.randint(0, 6, (120,), generator=g) / 8).tolist()
        labels = torch.randint(0, 3, (120,), generator=g).tolist()
        check(boxes, scores, labels, torch.tensor(thr, dtype=torch.float32).item())

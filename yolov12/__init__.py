"""A thin, weight-compatible YOLOv12 model on top of yolov12_kernels."""
from .model import PAPER, SCALES, YOLOv12

__all__ = ["YOLOv12", "SCALES", "PAPER"]

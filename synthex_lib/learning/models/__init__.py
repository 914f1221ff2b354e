"""Networks: the multi-task U-Net (segmentation + landmark heatmaps)."""

from synthex_lib.learning.models.multitask import MultiTaskUNet, build_model

__all__ = ["MultiTaskUNet", "build_model"]

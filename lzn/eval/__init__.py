"""Metrics as functions of (features or predictions, labels) -> numbers."""

from lzn.eval.probe import extract_features, knn_accuracy, linear_probe_accuracy

__all__ = ["extract_features", "knn_accuracy", "linear_probe_accuracy"]

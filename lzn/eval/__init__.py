"""Metrics as functions of (model, data) or (features, labels) -> numbers; nothing here needs a recipe."""

from lzn.eval.diagnostics import normal_ks, zone_diagnostics
from lzn.eval.features import (
    FeatureExtractor,
    custom_extractor,
    fast_extractor,
    inception_extractor,
    resize_bilinear_tf1,
)
from lzn.eval.fid import feature_statistics, fid, frechet_distance, generation_metrics, kid
from lzn.eval.precision_recall import knn_radii, precision_recall
from lzn.eval.probe import extract_features, knn_accuracy, linear_probe_accuracy
from lzn.eval.grids import caption_grid, class_grid, showcase_captions
from lzn.eval.judge import classifier_judge, pixel_judge, save_classifier
from lzn.eval.report import write_report
from lzn.eval.results import flat_figures
from lzn.eval.retrieval import recall_at_k
from lzn.eval.suite import METRICS, check_metrics, evaluate_model, generate_like, metric_rows
from lzn.eval.tasks import (accuracy, accuracy_sweep, class_consistency, median_l2, partition_accuracy,
                            reconstruction_error)
from lzn.eval.text import (RetrievalSettings, lzn_scores, prompt_predictions, retrieval_figures, retrieval_section,
                           t2i_consistency, text_to_image, trivial_recall_note)

__all__ = [
    "FeatureExtractor",
    "accuracy",
    "caption_grid",
    "class_grid",
    "flat_figures",
    "showcase_captions",
    "METRICS",
    "RetrievalSettings",
    "accuracy_sweep",
    "check_metrics",
    "class_consistency",
    "classifier_judge",
    "evaluate_model",
    "generate_like",
    "partition_accuracy",
    "reconstruction_error",
    "median_l2",
    "custom_extractor",
    "extract_features",
    "fast_extractor",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "generation_metrics",
    "inception_extractor",
    "kid",
    "knn_accuracy",
    "knn_radii",
    "linear_probe_accuracy",
    "lzn_scores",
    "metric_rows",
    "pixel_judge",
    "prompt_predictions",
    "recall_at_k",
    "retrieval_figures",
    "retrieval_section",
    "save_classifier",
    "t2i_consistency",
    "text_to_image",
    "normal_ks",
    "precision_recall",
    "resize_bilinear_tf1",
    "trivial_recall_note",
    "write_report",
    "zone_diagnostics",
]

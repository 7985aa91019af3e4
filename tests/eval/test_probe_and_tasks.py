"""Representation probes against closed cases, scikit-learn and a naive kNN written here; class
consistency of conditional samples with judges whose answer is known; metric selection of
evaluate_model."""

from __future__ import annotations

import math

import pytest
import torch

from lzn import FlowConfig
from lzn.data import ImageDataset
from lzn.eval import check_metrics, class_consistency, evaluate_model, knn_accuracy, linear_probe_accuracy
from tests.models.tiny import tiny_model


def _blobs(n_per_class: int, centres: torch.Tensor, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    k, d = centres.shape
    y = torch.arange(k).repeat_interleave(n_per_class)
    x = centres[y] + spread * torch.randn(k * n_per_class, d, generator=gen)
    return x, y


def test_linear_probe_and_knn_are_perfect_on_separable_data():
    centres = 10.0 * torch.eye(4, 6)  # four classes, far apart relative to the spread
    xa, ya = _blobs(50, centres, 0.5, seed=0)
    xb, yb = _blobs(20, centres, 0.5, seed=1)
    assert linear_probe_accuracy(xa, ya, xb, yb) == 1.0
    assert knn_accuracy(xa, ya, xb, yb) == 1.0


def test_linear_probe_agrees_with_scikit_learn_logistic_regression():
    """Overlapping classes, so accuracy is well below 1 and the two solvers can disagree on the margin."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    centres = torch.randn(5, 8, generator=torch.Generator().manual_seed(3)) * 1.5
    xa, ya = _blobs(200, centres, 1.5, seed=4)
    xb, yb = _blobs(200, centres, 1.5, seed=5)
    ours = linear_probe_accuracy(xa, ya, xb, yb, epochs=500)
    scaler = StandardScaler().fit(xa.numpy())
    clf = LogisticRegression(C=1e4, max_iter=5000).fit(scaler.transform(xa.numpy()), ya.numpy())
    theirs = float((clf.predict(scaler.transform(xb.numpy())) == yb.numpy()).mean())
    assert 0.4 < theirs < 0.98  # the case is not trivial
    assert abs(ours - theirs) <= 0.02, (ours, theirs)


def test_knn_matches_a_naive_weighted_vote():
    """Cosine similarity, the 20 nearest training points, votes weighted by exp(sim / 0.07)."""
    centres = torch.randn(3, 5, generator=torch.Generator().manual_seed(7))
    xa, ya = _blobs(40, centres, 1.0, seed=8)
    xb, yb = _blobs(30, centres, 1.0, seed=9)
    correct = 0
    for i in range(xb.shape[0]):
        sims = [(float(torch.dot(xb[i], xa[j]) / (xb[i].norm() * xa[j].norm())), int(ya[j]))
                for j in range(xa.shape[0])]
        sims.sort(key=lambda t: -t[0])
        votes = [0.0, 0.0, 0.0]
        for sim, label in sims[:20]:
            votes[label] += math.exp(sim / 0.07)
        correct += int(max(range(3), key=lambda c: votes[c]) == int(yb[i]))
    assert knn_accuracy(xa, ya, xb, yb) == pytest.approx(correct / xb.shape[0], abs=1e-6)  # float32 mean


def test_class_consistency_with_judges_of_known_answer():
    model = tiny_model(FlowConfig(steps=4, label_steps=4))
    oracle_calls: list[int] = []

    def always_zero(images: torch.Tensor) -> torch.Tensor:
        oracle_calls.append(images.shape[0])
        assert images.min() >= -1 and images.max() <= 1  # judged on clamped samples
        return torch.zeros(images.shape[0], dtype=torch.int64)

    res = class_consistency(model, always_zero, 7, steps=2, batch_size=3)
    # classes cycle 0, 1, 2, 0, 1, 2, 0: a judge that always says 0 is right on 3 of 7
    assert res["class_consistency"] == pytest.approx(3 / 7) and res["per_class"] == [1.0, 0.0, 0.0]
    assert oracle_calls == [3, 3, 1] and res["num_samples"] == 7
    with pytest.raises(ValueError, match="one class index per image"):
        class_consistency(model, lambda images: torch.zeros(1, dtype=torch.int64), 4, steps=2)
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        class_consistency(model, always_zero, 0, steps=2)


def test_evaluate_model_runs_only_the_metrics_named():
    model = tiny_model(FlowConfig(steps=4, label_steps=4))
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(24, 1, 8, 8, generator=gen) * 2 - 1
    data = ImageDataset(images=images, labels=torch.arange(24) % 3, num_classes=3, name="t")
    res = evaluate_model(model, data, data, metrics="probe,zones", progress=False, eval_batch_size=12)
    assert set(res) == {"evaluated_on", "representation", "zones"}
    assert set(res["representation"]) == {"features", "split", "probe_accuracy", "probe_accuracy_anchors"}
    assert check_metrics(["knn", "knn", "fid"]) == ("knn", "fid")
    for bad in ("", "fid,,kid", ["FID"], "recon,precision"):
        with pytest.raises(ValueError, match="metric"):
            check_metrics(bad)


def test_median_l2_is_the_middle_image_error_and_the_suite_reports_it():
    from lzn.eval import median_l2, reconstruction_error
    from lzn.eval.suite import metric_rows

    images = torch.zeros(4, 1, 2, 2)
    shift = torch.tensor([1.0, 2.0, 3.0, 10.0])  # each image moved by one pixel: per-image L2 = the shift
    rec = images.clone()
    rec[:, 0, 0, 0] = shift
    assert median_l2(images, rec) == pytest.approx(2.5)  # even count: between the middle two, as statistics.median
    assert median_l2(images[:3], rec[:3]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="shape"):
        median_l2(images, rec[:2])
    with pytest.raises(ValueError, match="non-empty"):
        median_l2(images[:0], rec[:0])
    model = tiny_model(FlowConfig(steps=4, label_steps=4))
    data_images = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    data = ImageDataset(images=data_images, labels=torch.arange(12) % 3, num_classes=3, name="t")
    res = evaluate_model(model, data, None, metrics="recon", sampler="euler", sampler_steps=3, recon_images=8,
                         progress=False)
    section = res["reconstruction"]
    labels = (torch.arange(12) % 3)[:8]  # the tiny decoder is class-conditional
    mean, again = reconstruction_error(model, data_images[:8], labels, sampler="euler", steps=3)  # same seed, batch
    per_image = (again - data_images[:8]).flatten(1).norm(dim=1)
    assert section["l2_per_image"] == pytest.approx(mean)
    assert section["l2_median"] == pytest.approx(float(per_image.sort().values[3:5].mean()))  # 8 images: 4th and 5th
    assert any("median image" in detail for name, _, detail in metric_rows(res) if name == "reconstruction L2")

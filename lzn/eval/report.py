"""One self-contained HTML page per training run (``RUN_DIR/report.html``): config, training curves,
results, sample grids, reconstructions and the zone picture of the trained model (method.md §1.5, §8).

The page needs nothing else: pictures are embedded as base64 PNG data URIs, styles are inline, and
nothing is fetched from the network. Missing pieces (no samples, no model, no encoder) get a sentence
in their section instead of an error. Uses models and data, never recipes.
"""

from __future__ import annotations

import json
import math
import os
import re
from html import escape
from pathlib import Path
from typing import Any

import torch

from lzn.atomic import atomic_write_text
from lzn.eval.html import figure_png, flatten, fmt, img, is_number, note, png_file, table
from lzn.eval.suite import metric_rows
from lzn.run_folder import RunFolder, read_results, read_run_file

SECTIONS = {"config": "Config", "curves": "Training curves", "metrics": "Results", "samples": "Samples",
            "reconstructions": "Reconstructions", "zones": "Zones"}
LOOP_KEYS = ("items_per_s", "lr_", "skipped_")  # bookkeeping columns: a second figure
MAX_GRIDS = 16  # sample grids over training shown at most (evenly spaced, the last always included)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
margin-top: 2em; } nav a { margin-right: 1em; } .muted { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd; padding: 0.25em 0.7em;
text-align: left; } th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 0.6em; overflow-x: auto; font-size: 0.85em;
margin: 0 0 0.8em 0; break-inside: avoid; } .config { column-count: 3; column-gap: 1em; }
img { max-width: 100%; height: auto; image-rendering: pixelated; } figure { margin: 0.5em 0; }
figcaption { color: #555; font-size: 0.9em; } .gallery { display: flex; flex-wrap: wrap; gap: 1em; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border: 1px solid #555; margin-right: 0.3em; }
.legend span.item { margin-right: 1em; white-space: nowrap; }
"""


def write_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                 device: str | torch.device = "cpu", max_points: int = 2000) -> Path:
    """Write the HTML report of the run folder ``run_dir`` (made by ``lzn train``) to ``out``
    (default ``RUN_DIR/report.html``), atomically; returns its path. ``device`` runs the model for
    the zone picture, which shows the latents of at most ``max_points`` held-out images."""
    run = RunFolder(run_dir)
    meta = read_run_file(run.path)
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise ValueError(f"max_points must be a positive int, got {max_points!r}")
    rows = _read_metrics(run.log)
    try:
        results = read_results(run.path)
    except ValueError:  # not written yet, or damaged: the page says there are no results
        results = {}
    name = run.path.resolve().name
    bodies = {
        "config": _config(meta),
        "curves": _curves(rows),
        "metrics": _metrics(results) + _evaluation(_read_evaluation(run.metrics)),
        "samples": _samples(run),
        "reconstructions": _reconstructions(run),
        "zones": _zones(run, meta, torch.device(device), max_points),
    }
    nav = " ".join(f'<a href="#{k}">{escape(v)}</a>' for k, v in SECTIONS.items())
    summary = ", ".join(f"{k} {escape(fmt(results[k]))}" for k in ("steps", "final_loss", "evaluated_on")
                        if k in results)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>lzn run report: {escape(name)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            f"<h1>lzn run report: {escape(name)}</h1>\n"
            f'<p class="muted">recipe {escape(str(meta.get("recipe", "?")))}'
            f"{'; ' + summary if summary else ''}; folder {escape(name)}</p>\n<nav>{nav}</nav>\n"
            + "".join(f'<h2 id="{k}">{escape(SECTIONS[k])}</h2>\n{body}\n' for k, body in bodies.items())
            + "</body>\n</html>\n")
    return atomic_write_text(Path(out) if out is not None else run.report, page)


# ---- reading the run folder ----------------------------------------------------------------------

def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl in step order, the last row of a step winning (a resumed run may repeat
    one); a cut-off or malformed line is skipped."""
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            by_step[int(row["step"])] = row
    return [by_step[s] for s in sorted(by_step)]


def _read_evaluation(path: Path) -> dict[str, Any]:
    """What ``lzn evaluate`` wrote (metrics.json); empty when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---- sections ------------------------------------------------------------------------------------

def _config(meta: dict[str, Any]) -> str:
    import yaml

    info = meta.get("data_info") or {}
    config = meta.get("config") or {}
    data = config.get("data") or {}
    facts: list[tuple[str, Any]] = [("recipe", meta.get("recipe")), ("data set", data.get("name"))]
    facts += [(k.replace("_", " "), info[k]) for k in ("channels", "size", "num_classes", "num_train") if k in info]
    names = info.get("class_names")
    if names:
        facts.append(("class names", names if len(names) <= 30 else list(names[:30]) + [f"... ({len(names)} in all)"]))
    blocks: list[tuple[bool, dict[str, Any]]] = []  # (is a section, keys): one YAML block per section,
    for key, value in config.items():  # consecutive plain keys together
        section = isinstance(value, dict) and bool(value)
        if section or not blocks or blocks[-1][0]:
            blocks.append((section, {}))
        blocks[-1][1][key] = value
    pres = "".join(f"<pre>{escape(yaml.safe_dump(b, sort_keys=False))}</pre>" for _, b in blocks)
    return table(facts) + f'\n<p>Resolved config:</p>\n<div class="config">{pres}</div>'


def _curves(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k != "step" and k not in keys and is_number(v)]
    if not keys:
        return note("No metrics were logged (metrics.jsonl is missing or empty).")
    loop = [k for k in keys if k.startswith(LOOP_KEYS)]
    train = sorted((k for k in keys if k not in loop), key=lambda k: (k != "loss", keys.index(k)))
    steps = [int(r["step"]) for r in rows]
    html = ""
    for group, caption in ((train, "loss and training metrics over steps"),
                           (loop, "bookkeeping: throughput, learning rates, skipped steps")):
        if group:
            html += img(figure_png(_small_multiples(steps, rows, group)), caption, caption, target=0)
    return html + note(f"{len(rows)} logged steps, from step {steps[0]} to {steps[-1]}.")


def _small_multiples(steps: list[int], rows: list[dict[str, Any]], keys: list[str]) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state
    from matplotlib.ticker import MaxNLocator

    ncol = min(3, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig = Figure(figsize=(3.6 * ncol, 2.5 * nrow), dpi=100, layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ys = [float(r[key]) if is_number(r.get(key)) else math.nan for r in rows]
        ax.plot(steps, ys, marker="o" if len(steps) <= 30 else None, markersize=3, linewidth=1.2)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    return fig


def _metrics(results: dict[str, Any]) -> str:
    if not results:
        return note("No results.json: the run has not finished (results are written after training).")
    items = flatten(results)
    extractor = [(k, v) for k, v in items if k.endswith("extractor")]
    counts = [(k, v) for k, v in items if re.search(r"num_(real|fake|samples)", k)]
    html = table(items)
    if extractor or counts:
        html += note("Sample-quality features and counts: " + ", ".join(f"{k} = {fmt(v)}" for k, v in extractor
                                                                          + counts) + ".")
    return html


def _evaluation(results: dict[str, Any]) -> str:
    """The table of metrics.json (the end of training's figures and those of ``lzn evaluate``), each figure
    with what it was measured on, and a pointer to ``lzn evaluate`` for what it has not measured yet."""
    more = note("Run `lzn evaluate RUN_DIR` for FID/KID, precision/recall, accuracy sweeps, probes and zone "
                "diagnostics, then write this page again.")
    if "evaluated_on" not in results:
        return note("No metrics.json.") + more
    rows = "".join(f'<tr><th>{escape(name)}</th><td class="num">{escape(value)}</td><td>{escape(detail)}</td></tr>\n'
                   for name, value, detail in metric_rows(results))
    table = f"<h3>Figures by metric (metrics.json: the end of training and lzn evaluate)</h3>\n<table>\n{rows}</table>"
    return table + ("" if "zones" in results else more)


def _samples(run: RunFolder) -> str:
    html = ""
    final = png_file(run.samples)
    html += img(final, "final samples", "final samples (samples.png)") if final else \
        note("No final sample grid (samples.png): this recipe does not generate, or the run has not finished.")
    grids = [(step, data) for step, path in run.sample_grids() if (data := png_file(path))]
    if not grids:
        return html + note("No sample grids over training (samples/step-*.png; set sample_every to save them).")
    shown = grids
    if len(grids) > MAX_GRIDS:
        picks = sorted({round(i * (len(grids) - 1) / (MAX_GRIDS - 1)) for i in range(MAX_GRIDS)})
        shown = [grids[i] for i in picks]
    said = f"{len(grids)} grids" + (f", {len(shown)} of them shown, evenly spaced" if len(shown) < len(grids) else "")
    items = "".join(img(data, f"samples at step {step}", f"step {step}", target=200) for step, data in shown)
    return html + f"<h3>Over training</h3>\n{note(said + '.')}\n<div class=\"gallery\">{items}</div>"


def _reconstructions(run: RunFolder) -> str:
    data = png_file(run.reconstructions)
    if data is None:
        return note("No reconstructions.png: this recipe does not reconstruct, or the run has not finished.")
    return img(data, "reconstructions", "each original followed by its reconstruction")


def _zones(run: RunFolder, meta: dict[str, Any], device: torch.device, max_points: int) -> str:
    """Latents of held-out images, PCA to 2-D, coloured by class; label anchors as stars (method.md §1.5)."""
    if not (run.model / "config.json").is_file():
        why = ("the classifier recipe exports no LZN model" if meta.get("recipe") == "classifier"
               else "the model is exported when training finishes")
        return note(f"No zone picture: the run has no model/ folder ({why}).")
    from lzn.data import DataConfig, has_split, load_split
    from lzn.models import LatentZoningNetwork

    try:
        model = LatentZoningNetwork.from_pretrained(str(run.model), map_location=device).eval()
    except (OSError, ValueError, RuntimeError) as err:
        return note(f"No zone picture: model/ could not be loaded ({' '.join(str(err).split())}).")
    if model.encoder is None:
        return note(f"No zone picture: this model (recipe {meta.get('recipe', '?')}) has no image encoder, so "
                     "images have no latents to show.")
    config = meta.get("config") or {}
    info = meta.get("data_info") or {}
    names = info.get("class_names") or (list(model.class_names) if model.class_names else None)
    try:
        cfg = DataConfig(**(config.get("data") or {}))
        split = "test" if has_split(cfg, "test") else "train"
        data = load_split(cfg, split, class_names=tuple(names) if names else None)
    except (OSError, ValueError, TypeError) as err:
        return note(f"No zone picture: the run's data could not be loaded ({' '.join(str(err).split())}).")
    n = len(data)
    gen = torch.Generator().manual_seed(0)
    index = torch.randperm(n, generator=gen)[:max_points] if n > max_points else torch.arange(n)
    images, labels = data.batch(index)  # (N, C, H, W), (N,) or None; a sharded set reads only these
    batch = int(config.get("eval_batch_size") or 2000)
    lat = []
    try:
        with torch.no_grad():
            for chunk in images.split(batch):
                noise = torch.randn(chunk.shape[0], model.latent_dim, generator=gen)  # (b, q), seeded
                lat.append(model.latents(chunk.to(device, model.dtype), noise=noise.to(device, model.dtype),
                                         context="batch").float().cpu())
    except ValueError as err:  # e.g. non-finite anchors of a diverged model
        return note(f"No zone picture: the latents could not be computed ({' '.join(str(err).split())}).")
    latents = torch.cat(lat)  # (N, q)
    anchors = model.label_anchors.weight.detach().float().cpu() if model.label_anchors is not None else None  # (K, q)
    points, stars, explained = _pca2(latents, anchors)
    k = int(info.get("num_classes") or data.num_classes or 0)
    if labels is not None:
        k = max(k, int(labels.max()) + 1)
    if stars is not None:
        k = max(k, stars.shape[0])
    names = list(names) if names and len(names) >= k else [str(i) for i in range(k)]
    png, colours = _zone_figure(points, labels, stars, names[:k], explained)
    where = "the test split" if split == "test" else "the training split (this data set has no test split)"
    text = (f"Latents of {len(index)} images of {where}, computed in batches of {batch} (eval_batch_size; each "
            f"batch is the anchor set, noise scale 1), projected to 2-D with PCA (PC1 and PC2 explain "
            f"{explained[0]:.0%} and {explained[1]:.0%} of the variance of the {model.latent_dim}-D latents).")
    if stars is not None:
        text += " Stars: the label anchors, projected with the same PCA."
    legend = ""
    if labels is not None:
        counts = torch.bincount(labels, minlength=k).tolist()
        legend = '<p class="legend">' + "".join(
            f'<span class="item"><span class="swatch" style="background:{colours[i]}"></span>{escape(names[i])} '
            f'<span class="muted">({counts[i]})</span></span>' for i in range(k)) + "</p>"
    return note(text) + "\n" + img(png, "zone picture", "latents coloured by class", target=0) + legend


def _pca2(latents: torch.Tensor, extra: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, list[float]]:
    """Project (N, q) latents and (K, q) extra points onto the latents' top two principal axes:
    (N, 2), (K, 2), and the fraction of variance each axis explains."""
    x = latents.double()
    mean = x.mean(dim=0, keepdim=True)  # (1, q)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # vh: (min(N, q), q)
    axes = vh[:2].T  # (q, <=2)
    var = s.pow(2)
    explained = (var[:2] / var.sum().clamp_min(1e-300)).tolist()
    pad = 2 - axes.shape[1]  # a 1-D latent space: the second axis is zero
    points = torch.nn.functional.pad((x - mean) @ axes, (0, pad))  # (N, 2)
    stars = torch.nn.functional.pad((extra.double() - mean) @ axes, (0, pad)) if extra is not None else None  # (K, 2)
    return points.float(), stars.float() if stars is not None else None, explained + [0.0] * pad


def _zone_figure(points: torch.Tensor, labels: torch.Tensor | None, stars: torch.Tensor | None, names: list[str],
                 explained: list[float]) -> tuple[bytes, list[str]]:
    """The scatter as PNG bytes, and the hex colour of each class."""
    import matplotlib
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    k = max(len(names), 1)
    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"]
    colours = [to_hex(cmap(i if k <= 20 else i / max(k - 1, 1))) for i in range(k)]
    fig = Figure(figsize=(7.5, 6.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    p = points.numpy()
    if labels is None:
        ax.scatter(p[:, 0], p[:, 1], s=12, alpha=0.7, linewidths=0, c="#1f77b4", label="latents (unlabelled)")
    else:
        lab = labels.numpy()
        for i in range(len(names)):
            sel = lab == i
            if sel.any():
                ax.scatter(p[sel, 0], p[sel, 1], s=12, alpha=0.7, linewidths=0, c=colours[i], label=names[i])
    if stars is not None:
        st = stars.numpy()
        ax.scatter(st[:, 0], st[:, 1], s=220, marker="*", c=colours[: len(st)], edgecolors="black", linewidths=1.0,
                   label="label anchors", zorder=3)
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=colours[i], label=names[i])
               for i in range(len(names)) if labels is not None and len(names) <= 20]
    if stars is not None:
        handles.append(Line2D([], [], ls="", marker="*", ms=13, mfc="white", mec="black", label="label anchors"))
    if handles:
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    return figure_png(fig), colours

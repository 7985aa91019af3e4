"""``lzn serve``: load a model once and serve its JSON API and the explorer page (lzn.serve)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from lzn.cli.common import data, load, model_command, non_negative, positive_int
from lzn.cli.output import say

TOKEN_ENV = "LZN_SERVE_TOKEN"


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = model_command(sub, "serve", "an HTTP API and an explorer page over a trained model", run)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; another one is reachable "
                        "from other machines: give a --token)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port (default: 8000; 0: any free one)")
    p.add_argument("--token", default=None,
                   help=f"a secret every request must carry as the header 'Authorization: Bearer TOKEN' (the page: "
                        f"open /?token=TOKEN); default: ${TOKEN_ENV} if set, else none")
    p.add_argument("--data", default=None,
                   help="the image set of nearest images and retrieval (default: the run's; a model folder has none "
                        "unless given: digits, fashion, cifar10, folder, arrays)")
    p.add_argument("--root", default=None, help="data path (default: the run's)")
    p.add_argument("--split", default="train", choices=["train", "test"], help="its split (default: train)")
    p.add_argument("--gallery", type=positive_int, default=2000,
                   help="images of that split the server holds, a class-balanced seeded draw (default: 2000)")
    p.add_argument("--noise-scale", type=non_negative, default=None,
                   help="alpha of classification latents (default: the run's eval_noise_scale, else 1)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="default sampler steps of generate / reconstruct (default: the run's sampler_steps, else 20)")
    p.add_argument("--zone-points", type=positive_int, default=1000,
                   help="points of the zone picture, laid out by t-SNE at start (default: 1000)")
    limits = p.add_argument_group("limits of one request (larger ones get 413)")
    limits.add_argument("--max-request-bytes", type=positive_int, default=4 * 2**20, help="JSON body (default: 4 MiB)")
    limits.add_argument("--max-image-side", type=positive_int, default=1024,
                        help="image width / height (default: 1024)")
    limits.add_argument("--max-batch", type=positive_int, default=16, help="images or captions sent (default: 16)")
    limits.add_argument("--max-samples", type=positive_int, default=16,
                        help="images returned: generated, or nearest / retrieved per query (default: 16)")
    limits.add_argument("--max-steps", type=positive_int, default=100, help="sampler steps (default: 100)")


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def is_local(host: str) -> bool:
    """Whether ``host`` is a loopback address (reachable from this machine only)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def gallery(args: argparse.Namespace, loaded: Any) -> Any:
    """The server's image set: ``--gallery`` images of the run's (or ``--data``'s) split, or None for a model
    folder without ``--data``."""
    from lzn.data import ImageDataset
    from lzn.models.reference_bank import reference_indices
    from lzn.serve import Gallery

    if loaded.meta is None and args.data is None:
        return None
    ds = data(args, loaded)
    labels = ds.labels if isinstance(ds, ImageDataset) else None
    images, picked = ds.batch(reference_indices(len(ds), labels, args.gallery))
    return Gallery(images, picked, ds.name if args.split in ds.name else f"{ds.name} ({args.split})",
                   tuple(ds.class_names) if ds.class_names else None)


def run(args: argparse.Namespace) -> int:
    from lzn.serve import Limits, ModelService, Settings
    from lzn.serve.app import LOCAL_HOSTS, bind, create_app, serve  # a missing `serve` extra: one line naming it

    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None and not token.strip():
        raise ValueError("--token is empty: give a secret, or leave --token out")
    limits = Limits(request_bytes=args.max_request_bytes, image_side=args.max_image_side, batch=args.max_batch,
                    samples=args.max_samples, steps=args.max_steps)
    sock = bind(args.host, args.port)  # before the model loads: a port in use fails at once
    loaded = load(args.run_dir, args.device)
    alpha = args.noise_scale if args.noise_scale is not None else float(loaded.setting("eval_noise_scale", 1.0))
    steps = args.steps or int(loaded.setting("sampler_steps", 20) or 20)
    images = gallery(args, loaded)
    service = ModelService(loaded.model, images, limits, Settings(noise_scale=alpha, steps=steps,
                                                                          zone_points=args.zone_points))
    local = is_local(args.host)
    app = create_app(service, token=token, hosts=LOCAL_HOSTS if local else None)
    if not local:
        print(f"lzn serve: warning: listening on {args.host}, reachable from other machines; "
              + ("every request must carry the token" if token else "anyone who reaches it can use the model "
                 "(give --token)"), file=sys.stderr)
    cannot = service.cannot()
    if cannot:
        say(f"this model cannot: {', '.join(cannot)} (GET /info says why)")
    name = f"[{args.host}]" if ":" in args.host else args.host
    address = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else name}:{sock.getsockname()[1]}/"
    say(f"serving {loaded.path} ({', '.join(loaded.model.data_types)}"
        + (f"; image set: {images.name}, {len(images.images)} images" if images is not None else "; no image set")
        + f") at {address}" + ("?token=..." if token else "") + " (Ctrl-C to stop)")
    serve(app, sock)
    say("stopped")
    return 0

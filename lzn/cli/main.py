"""``lzn`` command line: thin commands over the library.

    lzn train RECIPE --preset NAME [--config FILE.yaml] [--set key=value ...] --out RUN_DIR
    lzn sample RUN_OR_MODEL [--num N | --labels 0,1,2 | --labels cat,dog] [--out FILE.png]
    lzn sample RUN_OR_MODEL --caption "a fat zero" [--caption ...] [--captions-file FILE] [--per-caption 8]
                                  text-to-image (a text model): one labelled row per caption
    lzn classify RUN_OR_MODEL [--data NAME] [--root PATH] [--split test] [--context reference|batch] [--out FILE.npy]
    lzn classify RUN_OR_MODEL --prompts "the digit zero" "the digit one" ... | --prompt-template "the digit {cls}"
                                  prompt classification (a text model): one text per class, in class order
    lzn retrieve RUN_OR_MODEL --caption TEXT [--caption ...] [--k 8] [--split test] [--out FILE.png]
                                  the k best images of the split per caption (a text model)
    lzn embed RUN_OR_MODEL [--data NAME] [--root PATH] --out FILE.npy [--head]
    lzn reconstruct RUN_OR_MODEL [--out DIR]
    lzn serve RUN_OR_MODEL [--host 127.0.0.1] [--port 8000] [--token T]   a JSON API and an explorer page
    lzn evaluate RUN_OR_MODEL [--extractor fast|inception|none] [--num N]   every metric that applies
    lzn report RUN_DIR            one self-contained HTML page of the run
    lzn demo [--out DIR]          the joint recipe on digits, then samples, reconstructions, accuracy
    lzn zones [--out DIR]         the 2-D picture of anchors, zones and latents
    lzn data shard SOURCE --out DIR [--shard-size N] [--split train|test]   tar shards for data beyond memory
    lzn data info DIR             what a sharded data folder holds
    lzn import-release CKPT --out MODEL_DIR [--weights ema|live] [--case-study 1|2|3] [--data cifar10 --root PATH]
                                  the authors' released checkpoint as an lzn model folder

Inference commands load the exported model (RUN_DIR/model, or a save_pretrained folder) and call
lzn.eval; no training recipe is rebuilt. Expected failures (bad input, missing files or packages) end in one line ``lzn COMMAND: error: ...``
and exit code 2; ``LZN_DEBUG=1`` shows the traceback. Under torchrun only rank 0 prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn, TextIO

from lzn.cli import (classify, data, demo, embed, evaluate, reconstruct, release, report, retrieve, sample, serve,
                     train, zones)

COMMANDS = (train, sample, classify, embed, reconstruct, retrieve, serve, evaluate, report, demo, data, release, zones)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and exit code 2, like every other expected failure (no usage block)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """``lzn COMMAND ...``: each command module adds its own parser (``add_parser``), in the order of ``lzn --help``."""
    parser = _Parser(prog="lzn", description="Latent Zoning Networks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is at the time of the message (it may be replaced)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _RankZeroFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from lzn.distributed import launched_rank

        return launched_rank() == 0


def _setup_output(command: str) -> None:
    """Library messages (logger ``lzn``) as one line each on stderr, rank 0 only; deprecation notices
    from the libraries underneath are for developers, not for users of the command."""
    from lzn.distributed import launched_rank

    logger = logging.getLogger("lzn")
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(f"lzn {command}: %(message)s"))
    handler.addFilter(_RankZeroFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None,
             line: str | None = None) -> None:
        if launched_rank() == 0:
            print(f"lzn {command}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    warnings.showwarning = show
    if not sys.warnoptions:
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)


EXPECTED_ERRORS = (ValueError, OSError, ImportError, KeyError, RuntimeError)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a bad argument (one line, code 2): a code, not an exception
        return exit_.code if isinstance(exit_.code, int) else 2
    _setup_output(args.command)
    from lzn.distributed import stop_with_launcher

    stop_with_launcher(args.command)  # under torchrun: no orphan rank trains on after its launcher is killed
    try:
        return int(args.func(args))
    except EXPECTED_ERRORS as err:
        if os.environ.get("LZN_DEBUG"):
            raise
        if _peer_stopped(args.command, err):
            return 2
        _print_error(args.command, err)
        return 2
    except KeyboardInterrupt:
        print(f"lzn {args.command}: interrupted", file=sys.stderr)
        return 130


PEER_FAILURES = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "gloo/transport",
                 "NCCL communicator was aborted", "socket timeout", "Connection refused")


def _peer_stopped(command: str, err: BaseException) -> bool:
    """Under torchrun: a collective failed because another rank stopped (killed, or failed on its own). This
    rank then says so in one line, whatever its rank (rank 0 may be the one that stopped), and the command
    to resume; True when it did."""
    from lzn.distributed import launched_rank

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not isinstance(err, RuntimeError):
        return False
    text = str(err)
    if not any(p in text for p in PEER_FAILURES) and type(err).__name__ not in ("DistBackendError", "DistNetworkError"):
        return False
    print(f"lzn {command}: error: rank {launched_rank()} stopped: another rank of this run stopped first (killed, or "
          "failed: see its lines above); rerun the same command to resume from the last checkpoint",
          file=sys.stderr)
    return True


def _print_error(command: str, err: BaseException) -> None:
    from lzn.distributed import launched_rank

    if launched_rank() != 0:
        return
    if isinstance(err, ImportError) and "pip install" not in str(err):
        name = (getattr(err, "name", None) or "").split(".")[0] or "a missing package"
        msg = f"this needs the package {name!r}, which is not installed: pip install {name}"
    elif isinstance(err, KeyError):
        msg = str(err.args[0]) if err.args else "KeyError"
    else:
        msg = str(err).strip()
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    print(f"lzn {command}: error: {' '.join(lines) if len(lines) <= 3 else lines[0]}"
          if lines else f"lzn {command}: error: {type(err).__name__}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

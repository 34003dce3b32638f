"""Keep the frameworks' start-up logs off a command's stderr (the ``regnet-zoo`` CLI does, unless ``--verbose``).

TensorFlow's C++ runtime logs at import and at first device use: oneDNN and CUDA-driver INFO lines, and on a
machine without a GPU ``E0000 ... failed call to cuInit``, some of them twice (two libraries each log before
``absl::InitializeLog()``, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide those). JAX and absl log warnings through Python's
``logging``. Within ``quiet()`` the environment and the loggers are set before any framework is imported, and the
process's stderr (file descriptor 2) is captured for the whole block (a log line can come at first device use, long
after the import): the lines that are such logs are dropped, everything else is passed on when the block ends (all of
it when the block raises).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import BinaryIO, Iterator

ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow / XLA C++ logs: none (3 also hides ERROR, e.g. "failed call to cuInit")
    "GRPC_VERBOSITY": "ERROR",
}
LOGGERS = ("tensorflow", "absl", "jax", "keras")
# absl / glog lines ("I0000 00:00:1795965898.238414   11803 port.cc:153] ...", level I, W or E; F is kept), absl's
# note that it logs before InitializeLog, and the second line of TensorFlow's CPU-instructions message
NOISE = re.compile(rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] |"
                   rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR|"
                   rb"To enable the following instructions: ")


@contextmanager
def quiet() -> Iterator[None]:
    """Within the block the frameworks log quietly: the environment and loggers are set for frameworks imported in
    it (variables the user set are kept; all is restored afterwards), and the block's stderr is captured and passed
    on without the framework log lines (all of it when the block raises)."""
    saved_env = {name: os.environ.get(name) for name in ENVIRONMENT}
    saved_levels = {name: logging.getLogger(name).level for name in LOGGERS}
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with _captured():
            yield
    finally:
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _stderr_into(sink: BinaryIO) -> Iterator[None]:
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to keep quiet
        yield
        return
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def filtered(text: bytes) -> bytes:
    """``text`` without the framework log lines."""
    return b"".join(line for line in text.splitlines(keepends=True) if not NOISE.match(line))


@contextmanager
def _captured() -> Iterator[None]:
    """Run the block with stderr captured; pass on what is not a framework log line (everything if it raises)."""
    try:
        sink = tempfile.TemporaryFile()
    except OSError:
        yield
        return
    with sink:
        failed = True
        try:
            with _stderr_into(sink):
                yield
            failed = False
        finally:
            sink.seek(0)
            text = sink.read()
            rest = text if failed else filtered(text)
            if rest:
                sys.stderr.flush()
                os.write(2, rest)

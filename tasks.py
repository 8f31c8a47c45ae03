#!/usr/bin/env python3
"""The two commands a newcomer needs; only Python >= 3.11 is required.

    python3 tasks.py run    install into .venv, then start the service with the DOKU sandbox and
                            walk one order from payment to payout (Ctrl-C to stop)
    python3 tasks.py test   install into .venv, then run ruff, mypy and the whole test suite

Both install exactly the versions pinned in constraints.txt (again only when pyproject.toml or
constraints.txt changed). PostgreSQL is embedded (the pgserver wheel, or PostgreSQL's server
binaries on Python 3.13) unless DATABASE_URL is set. SIGINT, SIGTERM and SIGHUP sent to this
process are forwarded to the command it runs, which stops the service, the sandbox and the embedded
PostgreSQL; this process exits when it has (after at most STOP_TIMEOUT_S).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SPLITLEDGER_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".splitledger-installed"  # the hash of what was installed
STOP_TIMEOUT_S = 20.0


def wanted() -> str:
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        digest.update((ROOT / name).read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def install() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - a newcomer may run an older python3
        sys.exit("splitledger needs Python >= 3.11")
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if STAMP.exists() and STAMP.read_text() == wanted():
        return
    print("installing pinned dependencies (constraints.txt)", flush=True)
    subprocess.run(
        [
            str(PYTHON),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "-c",
            str(ROOT / "constraints.txt"),
            "-e",
            f"{ROOT}[test]",
        ],
        check=True,
        cwd=ROOT,
    )
    STAMP.write_text(wanted())


def call(args: list[str]) -> int:
    """Run ``args``, forwarding SIGINT/SIGTERM/SIGHUP to it; its exit code (128+N after signal N)."""
    child = subprocess.Popen(args, cwd=ROOT)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    deadline: float | None = None
    try:
        while True:
            try:
                code = child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if received and deadline is None:
                    deadline = time.monotonic() + STOP_TIMEOUT_S
                if deadline is not None and time.monotonic() > deadline:
                    print(f"{args[0]} did not stop within {STOP_TIMEOUT_S:g} s: killing it", file=sys.stderr)
                    child.kill()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code < 0:
        return 128 - code
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        return 2
    install()
    if argv[0] == "run":
        args = [str(BIN / "splitledger"), "demo", *argv[1:]]
        if "--once" not in argv[1:]:
            args.append("--keep-running")
        return call(args)
    return check() or call([str(PYTHON), "-m", "pytest", *argv[1:]])


CHECKS = (
    ("ruff", "check", "."),
    ("ruff", "format", "--check", "."),
    ("mypy",),  # files and strictness per package: [tool.mypy] in pyproject.toml
)


def check() -> int:
    """Lint, format and type checks (configured in pyproject.toml): zero findings, or the test command fails."""
    for command in CHECKS:
        print("$ " + " ".join(command), flush=True)
        code = subprocess.call([str(BIN / command[0]), *command[1:]], cwd=ROOT)
        if code:
            return code
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)

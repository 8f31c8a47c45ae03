#!/usr/bin/env python3
"""The two commands a newcomer needs; only Python >= 3.11 is required.

    python3 tasks.py run    install into .venv, then start the service with the DOKU sandbox and
                            walk one order from payment to payout (Ctrl-C to stop)
    python3 tasks.py test   install into .venv, then run ruff, mypy and the whole test suite

Both install exactly the versions pinned in constraints.txt. PostgreSQL comes from the pgserver
wheel (embedded) unless DATABASE_URL is set.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("SPLITLEDGER_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def install() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - a newcomer may run an older python3
        sys.exit("splitledger needs Python >= 3.11")
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
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


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        return 2
    install()
    if argv[0] == "run":
        args = [str(BIN / "splitledger"), "demo", *argv[1:]]
        if "--once" not in argv[1:]:
            args.append("--keep-running")
        return subprocess.call(args, cwd=ROOT)
    return check() or subprocess.call([str(PYTHON), "-m", "pytest", *argv[1:]], cwd=ROOT)


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

"""The README's walkthrough is a test: its shell blocks run, in order, against what ``tasks.py run``
starts, and each answer is checked, so the README cannot drift from the product.

How the walkthrough knows the stack: ``tasks.py run`` (the demo with ``--keep-running``) prints
``export API=… KEY=… SANDBOX=… CLIENT_ID=… PLATFORM=…`` and writes the same lines to ``demo.env``
(here ``SPLITLEDGER_DEMO_ENV`` puts it in a scratch directory); the walkthrough's first block
sources it. Every ```bash block of the section "One order, from payment to payout" runs in one
bash (``set -eo pipefail``: a failing command fails the test; ``curl --fail-with-body`` makes any
4xx/5xx one), and the ``<!-- expect: … -->`` comments under a block are text its output must
contain. Every block has at least one.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## One order, from payment to payout"
DONE = "__README_BLOCK_DONE__"


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    expect: tuple[str, ...]


def walkthrough(readme: str) -> list[Block]:
    """The section's ```bash blocks with the expectations written under each."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    first_line = readme[:start].count("\n") + 1
    blocks: list[Block] = []
    pattern = re.compile(r"^([ \t]*)```bash\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
    matches = list(pattern.finditer(section))
    for i, found in enumerate(matches):
        after = section[found.end() : matches[i + 1].start() if i + 1 < len(matches) else len(section)]
        expect = tuple(e.strip() for e in re.findall(r"<!--\s*expect:\s*(.*?)\s*-->", after))
        blocks.append(
            Block(
                line=first_line + section[: found.start()].count("\n"),
                code=textwrap.dedent(found.group(2)),
                expect=expect,
            )
        )
    return blocks


class Shell:
    """One bash that keeps its variables from block to block."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.send("set -eo pipefail\n")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def run(self, code: str, timeout_s: float = 60) -> str:
        self.send(f"{code}\nprintf '\\n%s\\n' {DONE}\n")
        out: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty as exc:
                raise AssertionError("the block did not finish in time:\n" + "".join(out)) from exc
            if line is None:
                raise AssertionError(f"the shell stopped (exit {self.proc.wait()}):\n" + "".join(out))
            if line.strip() == DONE:
                return "".join(out)
            out.append(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def start_tasks_run(scratch: Path, database_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        DATABASE_URL=database_url,
        SPLITLEDGER_DEMO_ENV=str(scratch / "demo.env"),
        SPLITLEDGER_VENV=sys.prefix,
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tasks.py"), "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if line.startswith("  (also in "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep its pipe drained
            return proc, "".join(seen)
    raise AssertionError("tasks.py run never kept running:\n" + "".join(seen)[-3000:])


def test_every_walkthrough_block_has_expectations():
    blocks = walkthrough((ROOT / "README.md").read_text())
    assert len(blocks) >= 8, "the walkthrough lost its steps"
    for block in blocks:
        assert block.expect, f"README line {block.line}: a block without <!-- expect: … --> checks nothing"
        assert "--fail-with-body" in block.code or "grep" in block.code, f"README line {block.line}"


def test_the_readme_walkthrough_runs_against_the_stack_tasks_py_run_starts(database_url):
    blocks = walkthrough((ROOT / "README.md").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="splitledger-readme-"))
    proc, story = start_tasks_run(scratch, database_url)
    shell = Shell(scratch, {k: v for k, v in os.environ.items() if not k.startswith("SPLITLEDGER_")})
    try:
        assert "clean:" in story and "NOT clean" not in story, story[-3000:]
        for block in blocks:
            out = shell.run(block.code)
            for expected in block.expect:
                assert expected in out, f"README line {block.line}: {expected!r} not in the answer:\n{out}"
    finally:
        shell.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

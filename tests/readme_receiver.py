"""The receiver README.md documents ("Events and webhooks"), loaded from the README itself, so the
tests check the verifier integrators copy, not a copy of it."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_receiver_source() -> str:
    text = README.read_text()
    section = text.split("## Events and webhooks", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (source,) = [b for b in blocks if "def verify" in b]
    return source


def load_readme_receiver(secret: str) -> Any:
    """The README's module (``verify``, ``Receiver``), its server not started, with ``SECRET`` set."""
    namespace: dict[str, Any] = {"__name__": "readme_receiver"}
    exec(compile(readme_receiver_source(), str(README), "exec"), namespace)  # our own README's code
    namespace["SECRET"] = secret.encode()
    module = SimpleNamespace(**namespace)
    return module

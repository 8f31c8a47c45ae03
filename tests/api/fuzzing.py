"""Schemathesis against the service's own OpenAPI document, over real loopback HTTP.

``fuzz`` generates requests for every operation of the document (valid ones and deliberately
invalid ones, each with free and with known path parameters), sends each one and records what came
back. Generation is bounded (``max_examples`` per operation and mode) and seeded, so a run is the
same run every time. It is synchronous (schemathesis calls through ``requests``): run it in a thread
while the service keeps serving in the test's event loop.

``LoopbackOnly`` is the transport the fuzzed service reaches DOKU through: the fuzzer may point a
platform's gateway anywhere, and nothing may leave this machine.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

PROBLEM_JSON = "application/problem+json"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LoopbackOnly(httpx.AsyncBaseTransport):
    """Real HTTP to loopback addresses; anything else fails as if unreachable (no DNS, no packet)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.refused: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not is_loopback(request.url.host):
            self.refused.append(str(request.url.host))
            raise httpx.ConnectError("only loopback hosts are reachable in this test", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:  # shared by every client the service builds: closed by the test
        return None

    async def close(self) -> None:
        await self._inner.aclose()


@dataclass
class Finding:
    operation: str
    mode: str
    status: int
    content_type: str
    method: str
    url: str
    body: bytes | None
    answer: str


@dataclass
class FuzzReport:
    requests: int = 0
    operations: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[Finding] = field(default_factory=list)
    not_problem: list[Finding] = field(default_factory=list)
    unsendable: int = 0

    def summary(self) -> str:
        by_op = Counter(f.operation for f in self.server_errors)
        statuses = dict(sorted(self.statuses.items()))
        return (
            f"{self.requests} requests over {len(self.operations)} operations; statuses {statuses}; "
            f"5xx: {len(self.server_errors)} {dict(by_op)}; 4xx without problem+json: {len(self.not_problem)}"
        )


def fuzz(
    document: dict[str, Any],
    base_url: str,
    *,
    headers: dict[str, str],
    known_path_parameters: dict[str, str],
    max_examples: int,
    seed: int,
) -> FuzzReport:
    schema = schemathesis.openapi.from_dict(document)
    report = FuzzReport()
    session = requests.Session()
    session.trust_env = False
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        report.operations.add(label)
        names = {p.name for p in operation.path_parameters}
        known = {name: value for name, value in known_path_parameters.items() if name in names}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for fixed in [None, known] if known else [None]:
                _fuzz_operation(report, session, operation, label, mode, fixed, base_url, headers, max_examples, seed)
    session.close()
    return report


def _fuzz_operation(
    report: FuzzReport,
    session: requests.Session,
    operation: Any,
    label: str,
    mode: GenerationMode,
    fixed: dict[str, str] | None,
    base_url: str,
    headers: dict[str, str],
    max_examples: int,
    seed: int,
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(strategy)
    def run(case: Any) -> None:
        # The generated Authorization is a random token: every request would stop at 401. Send the
        # platform's key instead (the 401 paths have their own tests).
        case.headers = {**(case.headers or {}), **headers}
        if case.method.upper() == "POST":
            case.headers["Idempotency-Key"] = f"fuzz-{secrets.token_hex(8)}"  # money-moving POSTs require one
        try:
            response = case.call(base_url=base_url, session=session, timeout=30)
        except (requests.RequestException, ValueError, UnicodeError):
            report.unsendable += 1  # e.g. a header value no HTTP client would send
            return
        report.requests += 1
        report.statuses[response.status_code] += 1
        content_type = ",".join(response.headers.get("content-type", []))
        if response.status_code >= 500 or (
            400 <= response.status_code < 500 and not content_type.startswith(PROBLEM_JSON)
        ):
            request = response.request
            finding = Finding(
                operation=label,
                mode=mode.value,
                status=response.status_code,
                content_type=content_type,
                method=request.method or "",
                url=request.url or "",
                body=request.body
                if isinstance(request.body, bytes) or request.body is None
                else str(request.body).encode(),
                answer=response.text[:300],
            )
            (report.server_errors if response.status_code >= 500 else report.not_problem).append(finding)

    try:
        run()
    except (hypothesis.errors.Unsatisfiable, hypothesis.errors.FailedHealthCheck):
        pass  # e.g. no invalid value exists for an operation without parameters
    except Exception as exc:  # schemathesis cannot make a negative case of some operations
        if "Unsatisfiable" not in type(exc).__name__ and "Generation" not in type(exc).__name__:
            raise

"""What the soak benchmark counts: every request's route, status and latency, and every job it was given.

Routes are recorded by template (``GET /v1/jobs/{id}``), so latencies of one endpoint are pooled whatever the
id. A transport failure (refused, reset, timed out) is recorded under the status ``error:<exception>``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx

# Answers a well-behaved client can get during the soak; any other 4xx is a client or server bug to look at.
EXPECTED = {
    "POST /v1/videos/plan": {200, 429},
    "POST /v1/backgrounds/mask": {200, 429},
    "POST /v1/videos": {200, 202, 429},
    "POST /v1/backgrounds": {200, 202, 429},
    "GET /v1/jobs": {200, 429},
    "GET /v1/jobs/{id}": {200, 429},
    "GET /v1/jobs/{id}/events": {200, 429},
    "POST /v1/jobs/{id}/cancel": {200, 409, 429},  # 409: it succeeded before the cancel arrived
    "GET /v1/jobs/{id}/result": {200, 409, 429},
}
SAMPLES_KEPT = 20


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class RequestStats:
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    by_route: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    server_errors: list[dict] = field(default_factory=list)
    unexpected: list[dict] = field(default_factory=list)

    def record(self, route: str, status: int | str, latency_s: float, response: httpx.Response | None = None) -> None:
        self.latencies_s[route].append(latency_s)
        self.statuses[str(status)] += 1
        self.by_route[route][str(status)] += 1
        if isinstance(status, str) or status >= 500:
            self._keep(self.server_errors, route, status, response)
        elif status >= 400 and status not in EXPECTED.get(route, ()):
            self._keep(self.unexpected, route, status, response)

    @staticmethod
    def _keep(samples: list[dict], route: str, status, response: httpx.Response | None) -> None:
        if len(samples) >= SAMPLES_KEPT:
            return
        body = ""
        if response is not None:
            try:
                body = response.text[:400]
            except (httpx.ResponseNotRead, UnicodeDecodeError):
                body = "(stream)"
        samples.append({"route": route, "status": status, "body": body})

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def count_where(self, test) -> int:
        return sum(n for status, n in self.statuses.items() if test(status))

    def summary(self, seconds: float) -> dict:
        server_errors = self.count_where(lambda s: s.startswith("5"))
        transport = self.count_where(lambda s: s.startswith("error:"))
        too_many = self.statuses.get("429", 0)
        routes = {}
        for route in sorted(self.latencies_s):
            values = sorted(self.latencies_s[route])
            routes[route] = {
                "requests": len(values),
                "p50_ms": round(1000 * percentile(values, 0.50), 1),
                "p95_ms": round(1000 * percentile(values, 0.95), 1),
                "p99_ms": round(1000 * percentile(values, 0.99), 1),
                "max_ms": round(1000 * values[-1], 1),
                "statuses": dict(sorted(self.by_route[route].items())),
            }
        return {
            "requests": self.total,
            "requests_per_s": round(self.total / seconds, 2) if seconds > 0 else None,
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors_5xx": server_errors,
            "transport_errors": transport,
            "share_429": round(too_many / self.total, 4) if self.total else 0.0,
            "unexpected_4xx": self._unexpected_4xx(),
            "routes": routes,
            "server_error_samples": self.server_errors,
            "unexpected_samples": self.unexpected,
        }

    def _unexpected_4xx(self) -> int:
        return sum(
            n
            for route, counts in self.by_route.items()
            for status, n in counts.items()
            if status.startswith("4") and int(status) not in EXPECTED.get(route, ())
        )


@dataclass
class JobLedger:
    """Every job the server accepted (202), by id, and the submissions of each tenant."""

    accepted: dict[str, dict] = field(default_factory=dict)  # id -> {"tenant", "kind"}
    submitted: Counter = field(default_factory=Counter)  # tenant -> job-creating POSTs sent
    rejected_429: Counter = field(default_factory=Counter)
    replays: Counter = field(default_factory=Counter)  # outcome of re-sending a request with its key
    anomalies: list[dict] = field(default_factory=list)

    def accept(self, job_id: str, tenant: str, kind: str) -> None:
        self.accepted[job_id] = {"tenant": tenant, "kind": kind}

    def note(self, what: str, **details) -> None:
        if len(self.anomalies) < 50:
            self.anomalies.append({"what": what, **details})

    def ids_of(self, tenant: str) -> list[str]:
        return [job_id for job_id, job in self.accepted.items() if job["tenant"] == tenant]

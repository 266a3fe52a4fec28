"""Every service's OpenAPI fuzzed with schemathesis, one operation at a time and as stateful
workflows (links schemathesis infers from the schemas: create → read → change).

Each response must pass three checks:
  - no 5xx;
  - a 4xx is application/problem+json with a title and a detail;
  - a rejected write (any 4xx to POST/PUT/PATCH/DELETE) changed nothing: every table of the
    service's database (its rows and the audit log) hashes the same before and after.

Requests carry the admin token, so the fuzzer reaches the handlers rather than the 401.
Hypothesis is derandomized (a fixed seed from each test's name) and the example counts are
bounded, so the run is the same every time and takes a couple of minutes on two cores.
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from live_apps import ADMIN_TOKEN, SERVICES, LiveApps
from schemathesis import Case, GenerationMode

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
#: Examples per operation and mode (valid and invalid input), and stateful scenarios.
EXAMPLES = 8
SCENARIOS = 20
STEPS = 6

SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


def _header(response: Any, name: str) -> str:
    value = response.headers.get(name.lower()) or response.headers.get(name) or ""
    return value[0] if isinstance(value, list) else str(value)


def problems_with(
    live: LiveApps, service: str, case: Case, response: Any, before: Any
) -> list[str]:
    """What is wrong with `response` to `case` (empty when nothing is)."""
    status = response.status_code
    where = f"{case.method.upper()} {case.formatted_path}"
    found: list[str] = []
    if status >= 500:
        found.append(f"{where} → {status}: {response.text[:300]}")
    elif status >= 400:
        ctype = _header(response, "content-type")
        try:
            body = json.loads(response.text)
        except ValueError:
            body = None
        if not ctype.startswith("application/problem+json"):
            found.append(f"{where} → {status} as {ctype!r}, not problem+json")
        elif not (
            isinstance(body, dict)
            and isinstance(body.get("title"), str)
            and isinstance(body.get("detail"), str)
        ):
            found.append(f"{where} → {status} problem without title/detail: {response.text[:200]}")
        if before is not None:
            after = live.snapshot(service)
            changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
            if changed:
                found.append(f"{where} → {status} rejected but wrote to {changed}")
    if found:
        found.append(
            f"    input: query={case.query!r} path={case.path_parameters!r} body={case.body!r}"[
                :600
            ]
        )
    return found


def call_checked(live: LiveApps, service: str, case: Case) -> list[str]:
    before = live.snapshot(service) if case.method.upper() in WRITES else None
    response = case.call(base_url=live.apps[service].url, headers=AUTH, timeout=30)
    return problems_with(live, service, case, response, before)


def schema_of(live: LiveApps, service: str) -> Any:
    return schemathesis.openapi.from_dict(live.apps[service].app.openapi())


@pytest.mark.timeout(240)
@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_survives_fuzzing(live: LiveApps, service: str) -> None:
    schema = schema_of(live, service)
    failures: list[str] = []
    exercised = dict.fromkeys(GenerationMode, 0)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @SETTINGS
            @hypothesis.given(case=operation.as_strategy(mode))
            def fuzz(case: Case) -> None:
                failures.extend(call_checked(live, service, case))

            try:
                fuzz()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to make invalid (no parameters and no body, e.g. GET /healthz).
                assert mode is GenerationMode.NEGATIVE, operation.label
                continue
            exercised[mode] += 1
    assert not failures, "\n".join(dict.fromkeys(failures))
    operations = len(list(schema.get_all_operations()))
    assert exercised[GenerationMode.POSITIVE] == operations
    assert exercised[GenerationMode.NEGATIVE] >= operations // 2


@pytest.mark.timeout(240)
@pytest.mark.parametrize("service", [s for s in SERVICES if s != "risk"])  # risk only reads
def test_stateful_workflows_survive_fuzzing(live: LiveApps, service: str) -> None:
    schema = schema_of(live, service)
    base = schema.as_state_machine()
    failures: list[str] = []
    snapshots: dict[str, Any] = {}

    class Workflow(base):  # type: ignore[misc,valid-type]
        def before_call(self, case: Case) -> None:
            snapshots["before"] = live.snapshot(service) if case.method.upper() in WRITES else None

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": live.apps[service].url, "headers": AUTH, "timeout": 30}

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            failures.extend(problems_with(live, service, case, response, snapshots["before"]))

    Workflow.run(
        settings=hypothesis.settings(SETTINGS, max_examples=SCENARIOS, stateful_step_count=STEPS)
    )
    assert not failures, "\n".join(dict.fromkeys(failures))

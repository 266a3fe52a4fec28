"""One invoice, one trace: the invoice API's request, the relay's publish, the dunning
consumer, the scheduler's reminder, dunning's relay, the notify consumer, the sender and its
SMTP send all share the trace id the caller sent, each span the child of the one before.
Then the metrics of that same work, scraped from `/metrics`."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence

import httpx
import pytest
from dunning.clock import clock
from obs_stack import NOTIFY_TOPICS, Stack, eventually, records_on, running_stack, span_exporter
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlalchemy import text

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _one(spans: Sequence[ReadableSpan], name: str, **attributes: object) -> ReadableSpan:
    found = [
        s
        for s in spans
        if s.name == name and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, [(s.name, s.attributes) for s in spans])
    return found[0]


def _parent_of(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.parent is not None, f"{child.name} has no parent"
    assert child.parent.span_id == parent.context.span_id, (
        f"{child.name}'s parent is not {parent.name}"
    )


async def _issue(stack: Stack, tag: str, traceparent: str) -> tuple[str, str, str]:
    address = f"ap-{tag}@globex.example"
    r = await stack.invoice.post(
        "/v1/customers",
        json={
            "name": f"Globex {tag}",
            "external_id": f"OBS-{tag}",
            "currency": "USD",
            "timezone": "America/New_York",
            "country": "US",
            "locale": "en-US",
            "payment_terms_days": 30,
            "contacts": [{"name": "AP", "email": address, "role": "billing"}],
        },
    )
    assert r.status_code == 201, r.text
    customer = r.json()["id"]
    r = await stack.invoice.post(
        "/v1/invoices",
        json={
            "customer_id": customer,
            "number": f"G-{tag}",
            "issue_date": "2027-02-01",
            "due_date": "2027-03-10",
            "currency": "USD",
            "total": 50000,
        },
        headers={"traceparent": traceparent},
    )
    assert r.status_code == 201, r.text
    return customer, r.json()["id"], address


async def test_one_invoice_is_one_trace_from_the_api_to_smtp(
    obs_dbs: dict[str, str], kafka_bootstrap: str
) -> None:
    exporter = span_exporter()
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"  # sampled, as a tracing caller's
    tag = secrets.token_hex(4)
    scrape_before = ""
    try:
        async with running_stack(obs_dbs, kafka_bootstrap, scheduler_clock=clock) as stack:
            scrape_before = (await stack.invoice.get("/metrics")).text
            _, invoice_id, address = await _issue(stack, tag, traceparent)

            async def planned() -> dict[str, dt.datetime]:
                stack.check()
                async with stack.dunning_maker() as session:
                    rows = await session.execute(
                        text("SELECT step_key, send_at FROM scheduled_step WHERE invoice_id = :i"),
                        {"i": invoice_id},
                    )
                    return {r.step_key: r.send_at for r in rows}

            steps = await eventually(planned, lambda s: "due_today" in s)
            # On the due date at 09:01 New York time: the scheduler finds the first reminder due.
            clock.set(steps["due_today"] + dt.timedelta(minutes=1), freeze=True)

            async def mails() -> list[str]:
                stack.check()
                return [
                    m.message["Subject"] for m in stack.catcher.store.mails if address in m.rcpt_tos
                ]

            await eventually(mails, lambda m: len(m) == 2)  # the invoice and the reminder

            def in_trace() -> list[ReadableSpan]:
                return [
                    s
                    for s in exporter.get_finished_spans()
                    if format(s.context.trace_id, "032x") == trace_id
                ]

            async def sends() -> list[ReadableSpan]:
                return [s for s in in_trace() if s.name == "notify send"]

            await eventually(sends, lambda s: len(s) == 2, within=20)
            await _assert_metrics(stack, scrape_before)
    finally:
        clock.reset()

    spans = in_trace()
    (api,) = [s for s in spans if s.kind == SpanKind.SERVER and s.name.startswith("POST")]
    assert api.name.endswith("/invoices"), api.name
    assert format(api.parent.span_id, "016x") == traceparent.split("-")[2]  # type: ignore[union-attr]

    issued = _one(
        spans, "invoice.events publish", **{"cloudevents.event_type": "invoice.issued.v1"}
    )
    _parent_of(issued, api)
    assert issued.kind == SpanKind.PRODUCER
    dunning_process = _one(
        spans,
        "invoice.events process",
        **{
            "messaging.consumer.group.name": stack.dunning_group,
            "cloudevents.event_type": "invoice.issued.v1",
        },
    )
    _parent_of(dunning_process, issued)
    assert dunning_process.kind == SpanKind.CONSUMER
    reminder = _one(spans, "dunning reminder due")
    _parent_of(reminder, dunning_process)
    reminder_published = _one(
        spans, "dunning.events publish", **{"cloudevents.event_type": "reminder.due.v1"}
    )
    _parent_of(reminder_published, reminder)
    notify_process = _one(
        spans,
        "dunning.events process",
        **{
            "messaging.consumer.group.name": stack.notify_group,
            "cloudevents.event_type": "reminder.due.v1",
        },
    )
    _parent_of(notify_process, reminder_published)
    reminder_send = _one(spans, "notify send", **{"notify.kind": "reminder"})
    _parent_of(reminder_send, notify_process)
    reminder_smtp = _one(
        spans, "smtp send", **{"notify.message_id": reminder_send.attributes["notify.message_id"]}
    )
    _parent_of(reminder_smtp, reminder_send)
    assert reminder_smtp.kind == SpanKind.CLIENT

    # The invoice's own delivery on issue: the same trace, through notify's consumer.
    invoice_send = _one(spans, "notify send", **{"notify.kind": "invoice"})
    notify_on_issue = _one(
        spans,
        "invoice.events process",
        **{
            "messaging.consumer.group.name": stack.notify_group,
            "cloudevents.event_type": "invoice.issued.v1",
        },
    )
    _parent_of(notify_on_issue, issued)
    _parent_of(invoice_send, notify_on_issue)
    # database spans, once each (SQLAlchemy's instrumentation only, not asyncpg's as well)
    statements = [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]
    assert statements
    assert all(s.instrumentation_scope.name.endswith("sqlalchemy") for s in statements), {
        s.instrumentation_scope.name for s in statements
    }
    assert invoice_id


async def test_outbound_httpx_calls_are_client_spans_that_carry_the_trace() -> None:
    """The services' httpx calls to each other (last looks, the UI) are spans of the caller's
    trace and send its traceparent (the in-process test above talks ASGI, which has no
    transport to instrument: here a real HTTP server answers)."""
    from duewise_service.telemetry import setup_process
    from duewise_service.worker_http import LoopWatch, WorkerHttp

    exporter = span_exporter()
    setup_process("duewise-observability-test")
    server = WorkerHttp("127.0.0.1", 0, LoopWatch(60)).start()
    tracer = trace.get_tracer("test")
    parent_ctx = trace.set_span_in_context(
        trace.NonRecordingSpan(
            trace.SpanContext(
                int(secrets.token_hex(16), 16),
                int(secrets.token_hex(8), 16),
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
    )
    try:
        with tracer.start_as_current_span("caller", context=parent_ctx) as caller:
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{server.port}/metrics")
            assert r.status_code == 200
    finally:
        server.stop()
    (call,) = [
        s
        for s in exporter.get_finished_spans()
        if s.kind == SpanKind.CLIENT and s.context.trace_id == caller.get_span_context().trace_id
    ]
    _parent_of(call, caller)  # type: ignore[arg-type]
    assert call.name.startswith("GET")


def _value(scrape: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in scrape.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


async def _assert_metrics(stack: Stack, before: str) -> None:
    """What `/metrics` says about the same work."""
    sent_on_topics = await records_on(stack.bootstrap, NOTIFY_TOPICS) - stack.notify_start

    async def scrape() -> str:
        r = await stack.invoice.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        return r.text

    # every record the broker holds for notify's topics since it started was processed
    after = await eventually(
        scrape,
        lambda s: (
            _value(s, "duewise_consumer_events_processed_total", consumer=stack.notify_group)
            == sent_on_topics
            # and the lag gauge caught up with it (it is measured every 2 s)
            and f'consumer="{stack.notify_group}"' in s
            and _value(s, "duewise_consumer_lag", consumer=stack.notify_group) == 0
        ),
        within=20,
    )
    group = stack.notify_group
    assert (
        _value(after, "duewise_consumer_events_processed_total", consumer=group, outcome="applied")
        >= 3
    )
    assert _value(after, "duewise_consumer_dlt_records_total", consumer=group) == 0

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("duewise_outbox_published_total", topic="invoice.events") >= 2
    assert delta("duewise_outbox_published_total", topic="dunning.events") >= 1
    assert delta("duewise_reminders_due_total") >= 1
    assert delta("duewise_reminders_emitted_total") >= 1
    assert delta("duewise_messages_sent_total", channel="email", kind="reminder") == 1
    assert delta("duewise_messages_sent_total", channel="email", kind="invoice") == 1
    assert delta("duewise_scheduler_pass_duration_seconds_count") >= 1
    assert "duewise_consumer_lag{" in after
    assert f'consumer="{group}"' in after
    assert "duewise_outbox_backlog{" in after
    assert "duewise_outbox_oldest_age_seconds{" in after
    # the API's own requests, by the FastAPI instrumentation (the scrape itself is not counted)
    # (the route's template, as FastAPI's router holds it under the /v1 prefix)
    assert (
        delta(
            "http_server_duration_milliseconds_count",
            http_method="POST",
            http_target="/invoices",
            http_status_code="201",
        )
        == 1
    )
    assert "/metrics" not in "".join(
        line for line in after.splitlines() if line.startswith("http_server_duration")
    )


def test_a_risk_batch_span_links_every_records_trace() -> None:
    """Risk applies a partition's records in one transaction: its span cannot be the child of
    each record's, so it links to each distinct trace (and skips records without one); the
    library's run span (EventConsumer's run_handler) does this with links_to."""
    from duewise_events.envelope import Envelope
    from duewise_events.tracing import links_to

    def envelope(traceparent: str | None) -> Envelope:
        return Envelope(
            id=secrets.token_hex(8),
            source="duewise/invoice",
            type="invoice.issued.v1",
            time=dt.datetime.now(dt.UTC),
            key="cus_1",
            data={},
            traceparent=traceparent,
        )

    a, b = (f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01" for _ in range(2))
    links = links_to(e.traceparent for e in [envelope(a), envelope(b), envelope(a), envelope(None)])
    assert [format(link.context.trace_id, "032x") for link in links] == [
        a.split("-")[1],
        b.split("-")[1],
    ]

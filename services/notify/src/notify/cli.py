"""The notify service's commands: `python -m notify.cli migrate|api|relay|consumer|sender`."""

from __future__ import annotations

import asyncio

import typer
from duewise_service.commands import run_consumer, run_relay
from duewise_service.telemetry import run_worker

from notify.config import Settings, get_settings

app = typer.Typer(help="duewise notify service", no_args_is_help=True)
SERVICE_NAME = "duewise-notify"
CONSUMER_GROUP = "notify"
#: What the consumer reads: every fact it words messages from, and its own events (webhooks).
CONSUMED_TOPICS = ("invoice.events", "dunning.events", "risk.events", "notify.events")


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from notify.migrations import upgrade

    upgrade(get_settings().database_url)
    typer.echo("notify: database migrated to head")


@app.command()
def api() -> None:
    """Serve the HTTP API on NOTIFY_HOST:NOTIFY_PORT (default 0.0.0.0:8004)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "notify.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        access_log=False,
    )


@app.command()
def relay() -> None:
    """Publish committed outbox rows to Kafka until SIGTERM/SIGINT."""
    from notify.models import RELAY_LOCK_KEY

    run_relay(SERVICE_NAME, get_settings(), lock_key=RELAY_LOCK_KEY)


@app.command()
def consumer() -> None:
    """Consume the events notify reacts to into projections and messages until signalled."""
    from notify.handlers import HANDLERS
    from notify.models import INBOX_TABLE

    run_consumer(
        SERVICE_NAME, get_settings(), CONSUMED_TOPICS, HANDLERS, INBOX_TABLE, group=CONSUMER_GROUP
    )


def build_sender_parts(settings: Settings):  # type: ignore[no-untyped-def]
    """The channels, renderer and last look a sender needs, from the settings."""
    from notify.channels.email import SmtpSender
    from notify.channels.sms import TwilioSms
    from notify.channels.webhooks import WebhookSender
    from notify.lastlook import InvoiceApiLastLook
    from notify.render import Renderer

    return (
        SmtpSender.from_url(
            settings.smtp_url, from_addr=settings.mail_from, pool_size=settings.smtp_pool_size
        ),
        TwilioSms(
            base_url=settings.sms_url,
            account_sid=settings.sms_account_sid,
            auth_token=settings.sms_auth_token.get_secret_value(),
            from_number=settings.sms_from,
        ),
        WebhookSender(allow_private=settings.webhook_allow_private),
        Renderer(settings.template_dir, settings.payment_link_template),
        InvoiceApiLastLook.from_settings(
            settings.invoice_api_url, settings.last_look_token, settings.last_look_timeout_s
        ),
    )


@app.command()
def sender() -> None:
    """Claim and send recorded messages until SIGTERM/SIGINT (run as many as you like)."""
    from duewise_service.db import worker_sessions

    from notify.main import check_production
    from notify.sender import Sender

    settings = get_settings()
    check_production(settings)
    if settings.sender_pause_after_send_s and settings.production:
        raise RuntimeError("NOTIFY_SENDER_PAUSE_AFTER_SEND_S is for fault tests only")

    async def main(stop: asyncio.Event) -> None:
        email, sms, webhooks, renderer, last_look = build_sender_parts(settings)
        try:
            # A connection per message in flight, and one for the claim.
            pool = settings.sender_concurrency + 1
            async with worker_sessions(settings.sqlalchemy_url, pool_size=pool) as sessions:
                await Sender(
                    sessions,
                    settings=settings,
                    email=email,
                    sms=sms,
                    webhooks=webhooks,
                    renderer=renderer,
                    last_look=last_look,
                ).run(stop)
        finally:
            await email.aclose()
            await last_look.aclose()

    run_worker(SERVICE_NAME, main)


if __name__ == "__main__":
    app()

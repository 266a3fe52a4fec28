"""The adapters that talk to the outside world: SMTP email, SMS providers, outbound webhooks.

Nothing here touches the database: each adapter takes a fully formed message, performs one
delivery attempt, and reports what the other side said (or raises an error that says whether
trying again could help). Claiming, retrying and logging belong to the sender worker.
"""

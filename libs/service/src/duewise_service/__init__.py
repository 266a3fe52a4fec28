"""Plumbing shared by the duewise services, so that each does these things one way.

The contract between services is `duewise_events`; this package holds none of it. It is
what every service needs the same way at its edges: problem+json errors, running its own
Alembic history, reading database URLs.
"""

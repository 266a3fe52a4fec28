"""Root of the test suite: the real PostgreSQL and Kafka-protocol broker every test talks to.

The fixtures come from the devstack: they use DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when the
environment gives them, and otherwise start an embedded PostgreSQL and a Tansu broker.
"""

pytest_plugins = ["duewise_dev.pytest_plugin"]

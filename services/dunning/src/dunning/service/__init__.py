"""Use cases: change rows and add outbox events; never commit, never touch Kafka."""

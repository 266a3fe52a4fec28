"""The notify service's use cases, called by the API and the consumer."""

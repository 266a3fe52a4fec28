"""Constants shared by the end-to-end tests and their fixtures."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "quickstart-test-token-0123456789abcdef"
INVOICE = "http://127.0.0.1:8001"
DUNNING = "http://127.0.0.1:8002"
RISK = "http://127.0.0.1:8003"
NOTIFY = "http://127.0.0.1:8004"

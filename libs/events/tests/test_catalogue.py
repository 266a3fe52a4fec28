"""The catalogue document and the code must say the same thing."""

import yaml
from duewise_events.asyncapi import DOCUMENT, build, render
from duewise_events.catalogue import CATALOGUE


def test_committed_asyncapi_matches_the_code() -> None:
    assert DOCUMENT.exists(), "libs/events/asyncapi.yaml is missing: run duewise-catalogue"
    assert DOCUMENT.read_text() == render(), "asyncapi.yaml is stale: run duewise-catalogue"


def test_every_event_class_is_documented_with_topic_and_key() -> None:
    doc = yaml.safe_load(DOCUMENT.read_text())
    messages = doc["components"]["messages"]
    by_type = {m["name"]: m for m in messages.values()}
    for cls in CATALOGUE:
        assert cls.TYPE in by_type, cls
        assert by_type[cls.TYPE]["bindings"]["kafka"]["key"]["description"] == "customer_id"
        channel = next(c for c in doc["channels"].values() if c["address"] == cls.TOPIC)
        assert cls.__name__ in channel["messages"]
        schema = doc["components"]["schemas"][cls.__name__]
        assert "customer_id" in schema["required"]
    assert build()["asyncapi"] == "3.0.0"

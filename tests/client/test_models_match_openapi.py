"""The client's models say what the service's OpenAPI document says: the same fields,
required alike, and every value of an enum field known to the client."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel
from sourcecheck_client import models

from api.main import app
from connectors import base as events
from connectors.base import StepStatus

# client model -> the schema it mirrors in the document
MIRRORS: dict[type[BaseModel], str] = {
    models.Step: "StepInfo",
    models.JobInfo: "JobInfo",
    models.CheckWarning: "WarningInfo",
    models.TestResult: "TestResult",
    models.Source: "SourcePublic",
    models.LastTest: "LastTest",
    models.TestRecord: "TestRecordPublic",
    models.TestRecordPage: "Page_TestRecordPublic_",
    models.SourceDefinition: "SourceDefinitionPublic",
    models.FieldError: "ErrorDetail",
}
# an enum schema of the document -> the values the client lists for it
KNOWN_VALUES = {
    "StepStatus": models.STEP_STATUSES,
    "JobStatus": models.STATUSES,
    "FailureType": models.FAILURE_TYPES,
    "WarningCode": models.WARNING_CODES,
}


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = app.openapi()["components"]["schemas"]
    return schemas


def _enum_refs(prop: dict[str, Any]) -> list[str]:
    """The names of the enum schemas a property refers to (directly or as one of anyOf)."""
    refs = [prop.get("$ref")] + [branch.get("$ref") for branch in prop.get("anyOf", [])]
    return [ref.rsplit("/", 1)[1] for ref in refs if ref]


@pytest.mark.parametrize("model", list(MIRRORS), ids=lambda m: m.__name__)
def test_client_model_has_the_documents_fields_required_alike(model: type[BaseModel]) -> None:
    schema = _schemas()[MIRRORS[model]]
    assert set(model.model_fields) == set(schema["properties"])
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert required == set(schema.get("required", []))


def test_client_knows_every_value_of_every_enum_field() -> None:
    schemas = _schemas()
    seen = set()
    for name in MIRRORS.values():
        for prop in schemas[name]["properties"].values():
            for ref in _enum_refs(prop):
                if "enum" in schemas[ref]:
                    seen.add(ref)
                    assert set(schemas[ref]["enum"]) <= KNOWN_VALUES[ref], ref
    assert seen == set(KNOWN_VALUES)  # the document does show these fields as enums


def test_client_accepts_a_failure_type_it_does_not_know() -> None:
    info = models.JobInfo.model_validate(
        {
            "job_id": "job_1",
            "source_id": None,
            "source_definition_id": "postgres",
            "workspace_id": None,
            "timeout_seconds": 5,
            "created_at": "2026-01-01T00:00:00Z",
            "type": "a_type_from_the_future",
        }
    )
    assert info.type == "a_type_from_the_future"


def test_client_event_models_have_the_fields_the_service_sends() -> None:
    # The events are not JSON bodies of the OpenAPI document: they mirror connectors.base's events.
    sent = [
        events.PlanEvent(("resolve", "tcp")),
        events.StepEvent("tcp", events.RUNNING),
        events.StepEvent("tcp", "failed", 3, "Connection refused"),
        events.WarningEvent("token_expiring", "expires in 2 days", "renew it"),
    ]
    mirrors: dict[str, type[BaseModel]] = {
        "plan": models.PlanEvent,
        "step": models.StepEvent,
        "warning": models.WarningEvent,
    }
    for event in sent:
        model = mirrors[event.event]
        parsed = model.model_validate(event.data())
        assert parsed.model_dump(exclude={"id", "event"}, exclude_unset=True) == event.data()
    ended = sent[2].data()
    assert set(models.StepEvent.model_fields) - {"id", "event"} == set(ended)
    assert set(models.PlanEvent.model_fields) - {"id", "event"} == set(sent[0].data())
    assert set(models.WarningEvent.model_fields) - {"id", "event"} == set(sent[3].data())
    assert models.STEP_EVENT_STATUSES == {s.value for s in StepStatus} | {events.RUNNING}

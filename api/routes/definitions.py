"""Source definitions: the kinds of source that can be tested, from the connector registry."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentOrg, DefinitionIdParam
from api.errors import NotFound
from api.forms import Form, form_of
from api.models import ORGANIZATION_ERRORS, Page, SourceDefinitionPublic, error_responses
from connectors.base import Connector
from connectors.errors import UnknownConnector
from connectors.registry import all_connectors, get_connector

router = APIRouter(tags=["Source definitions"], responses=error_responses(*ORGANIZATION_ERRORS))


def to_public(connector: Connector) -> SourceDefinitionPublic:
    return SourceDefinitionPublic(
        id=connector.name,
        name=connector.title,
        category=connector.category,
        icon=connector.icon or connector.name,
        documentation_url=connector.documentation_url,
        connection_specification=connector.connection_specification(),
    )


@router.get("/source-definitions", response_model=Page[SourceDefinitionPublic], summary="List source definitions")
def list_definitions(org: CurrentOrg) -> Page[SourceDefinitionPublic]:
    data = [to_public(c) for c in all_connectors().values()]
    return Page(data=data, count=len(data))


@router.get(
    "/source-definitions/{definition_id}", response_model=SourceDefinitionPublic, summary="Get a source definition"
)
def get_definition(org: CurrentOrg, definition_id: DefinitionIdParam) -> SourceDefinitionPublic:
    try:
        return to_public(get_connector(definition_id))
    except UnknownConnector as exc:
        raise NotFound(str(exc)) from None


@router.get(
    "/source-definitions/{definition_id}/form",
    response_model=Form,
    response_model_exclude_none=True,
    summary="Get a source definition's form",
    description="The definition's connection_specification as the console draws it: references inlined, "
    "optional `anyOf [X, null]` collapsed to X (`nullable`), tagged `oneOf` unions as a `choice` (api/forms.py).",
)
def get_definition_form(org: CurrentOrg, definition_id: DefinitionIdParam) -> Form:
    try:
        connector = get_connector(definition_id)
    except UnknownConnector as exc:
        raise NotFound(str(exc)) from None
    return form_of(connector.name, connector.title, connector.connection_specification())

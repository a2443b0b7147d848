"""api.forms: a connection_specification as the console draws it."""

from __future__ import annotations

from typing import Any

from api.forms import MAX_DEPTH, FormField, form_of
from connectors.registry import all_connectors, get_connector


def _by_path(fields: list[FormField]) -> dict[str, FormField]:
    found: dict[str, FormField] = {}
    for field in fields:
        found[field.path] = field
        found.update(_by_path(field.fields or []))
        for choice in field.choices or []:
            found.update(_by_path(choice.fields))
    return found


def _postgres() -> dict[str, FormField]:
    connector = get_connector("postgres")
    return _by_path(form_of("postgres", connector.title, connector.connection_specification()).fields)


def test_the_postgres_password_is_a_required_secret_text_field() -> None:
    password = _postgres()["password"]
    assert (password.kind, password.secret, password.required, password.placeholder) == ("text", True, True, None)


def test_optional_any_of_null_collapses_to_its_type_marked_nullable() -> None:
    ssl_mode = _postgres()["ssl_mode"]
    assert ssl_mode.kind == "select" and ssl_mode.nullable and not ssl_mode.required
    assert ssl_mode.options == ["disable", "prefer", "require", "verify-ca", "verify-full"]
    assert _postgres()["port"].kind == "integer" and _postgres()["port"].default == 5432


def test_references_are_inlined_and_a_tagged_union_is_a_choice() -> None:
    fields = _postgres()
    tunnel = fields["ssh_tunnel"]
    assert tunnel.kind == "object" and tunnel.nullable  # an optional $ref, inlined
    auth = fields["ssh_tunnel.auth"]
    assert auth.kind == "choice" and auth.discriminator == "type"
    assert [c.value for c in auth.choices or []] == ["password", "private_key"]
    by_value = {c.value: c for c in auth.choices or []}
    # The tag itself is the select, not a field of the branch.
    assert [f.path for f in by_value["password"].fields] == ["ssh_tunnel.auth.password"]
    assert by_value["password"].fields[0].secret
    assert {f.name for f in by_value["private_key"].fields} == {"private_key", "passphrase"}


def test_a_multiline_example_makes_a_text_area_but_a_secret_stays_a_password_input() -> None:
    fields = _postgres()
    assert fields["ssl_root_cert"].kind == "textarea"
    private_key = next(f for c in fields["ssh_tunnel.auth"].choices or [] for f in c.fields if f.name == "private_key")
    assert private_key.kind == "text" and private_key.secret


def test_other_secret_markers_and_unknown_shapes_are_understood() -> None:
    schema: dict[str, Any] = {
        "properties": {
            "a": {"type": "string", "airbyte_secret": True},
            "b": {"type": "string", "x-secret": True},
            "c": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "d": {"type": "object", "additionalProperties": {"type": "string"}},
            "e": {"type": "array", "items": {"type": "integer"}},
            "f": {"$ref": "#/$defs/Missing"},
        },
        "required": ["a"],
    }
    fields = _by_path(form_of("x", "X", schema).fields)
    assert fields["a"].secret and fields["a"].required and fields["b"].secret
    assert fields["c"].kind == "json" and fields["d"].kind == "json" and fields["f"].kind == "json"
    assert (fields["e"].kind, fields["e"].item_kind) == ("list", "integer")


def test_a_self_referencing_schema_stops_at_the_depth_bound() -> None:
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "properties": {"root": {"$ref": "#/$defs/Node"}},
    }
    field = form_of("x", "X", schema).fields[0]
    depth = 0
    while field.fields:
        field, depth = field.fields[0], depth + 1
    assert depth == MAX_DEPTH and field.kind == "json"


def test_every_connector_has_a_form_with_every_secret_marked() -> None:
    for name, connector in all_connectors().items():
        spec = connector.connection_specification()
        fields = _by_path(form_of(name, connector.title, spec).fields)
        assert fields, name
        top_secrets = {k for k, v in spec.get("properties", {}).items() if v.get("secret")}
        assert top_secrets <= {p for p, f in fields.items() if f.secret}, name

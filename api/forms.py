"""A connector's ``connection_specification`` as a form: what the console draws.

Pydantic's JSON Schema is made for validators, not for drawing: references to ``$defs``,
optional fields as ``anyOf [X, null]``, tagged unions as ``oneOf`` with a ``discriminator``.
:func:`form_of` turns it into a tree of :class:`FormField` with those inlined and collapsed,
so the page's script only walks a list. Anything it does not recognise becomes a ``json``
field (a text area holding JSON), never an error: a plugin's schema may be unusual.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

FieldKind = Literal["text", "textarea", "integer", "number", "boolean", "select", "object", "choice", "list", "json"]

MAX_DEPTH = 8
"""Levels of nesting drawn; deeper (or a self-referencing schema) becomes a ``json`` field."""


class FormChoice(BaseModel):
    """One branch of a tagged union: the tag's value and the fields that come with it."""

    value: str
    title: str
    fields: list[FormField]


class FormField(BaseModel):
    name: str = Field(description="The key in its object.")
    path: str = Field(description="Dotted from the configuration's root, as a result's `fields` name it.")
    title: str
    description: str | None = None
    kind: FieldKind
    required: bool = False
    nullable: bool = Field(False, description="Empty means null (an `anyOf [X, null]`).")
    secret: bool = Field(False, description="Drawn as a password input; masked in answers.")
    default: Any = None
    placeholder: str | None = Field(None, description="The schema's first example, when it is a plain value.")
    options: list[str | int | float] | None = Field(None, description="A `select`'s values.")
    item_kind: Literal["text", "integer", "number"] | None = Field(None, description="A `list`'s items.")
    minimum: float | None = None
    maximum: float | None = None
    fields: list[FormField] | None = Field(None, description="An `object`'s fields.")
    discriminator: str | None = Field(None, description="A `choice`'s tag property (`type`).")
    choices: list[FormChoice] | None = None


class Form(BaseModel):
    definition_id: str
    title: str
    fields: list[FormField]


def form_of(definition_id: str, title: str, schema: dict[str, Any]) -> Form:
    """The form of ``schema`` (a connector's connection_specification)."""
    return Form(definition_id=definition_id, title=title, fields=_Walker(schema).fields(schema, "", 0))


class _Walker:
    def __init__(self, root: dict[str, Any]) -> None:
        self.defs: dict[str, Any] = root.get("$defs", {}) if isinstance(root.get("$defs"), dict) else {}

    def resolve(self, schema: Any) -> dict[str, Any]:
        """``schema`` with its ``$ref`` (to ``#/$defs/...``) replaced by the definition, its own keys kept."""
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        target = self.defs.get(ref.rsplit("/", 1)[-1], {})
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}

    def fields(self, schema: dict[str, Any], prefix: str, depth: int) -> list[FormField]:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        return [
            self.field(name, prop, f"{prefix}{name}", name in required, depth)
            for name, prop in properties.items()
            if isinstance(prop, dict)
        ]

    def field(self, name: str, raw: dict[str, Any], path: str, required: bool, depth: int) -> FormField:
        schema = self.resolve(raw)
        nullable = False
        branches = schema.get("anyOf")
        if isinstance(branches, list):
            concrete = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            nullable = len(concrete) < len(branches)
            if len(concrete) == 1:
                # The branch's own keys (type, enum, format...) under the field's (title, default...).
                schema = {**self.resolve(concrete[0]), **{k: v for k, v in schema.items() if k != "anyOf"}}
        base = FormField(
            name=name,
            path=path,
            title=str(schema.get("title") or name),
            description=schema.get("description") if isinstance(schema.get("description"), str) else None,
            kind="json",
            required=required,
            nullable=nullable,
            secret=bool(schema.get("secret") or schema.get("airbyte_secret") or schema.get("x-secret")),
            default=schema.get("default"),
            placeholder=_placeholder(schema),
        )
        if depth >= MAX_DEPTH or "anyOf" in schema:
            return base
        if isinstance(schema.get("oneOf"), list) and isinstance(schema.get("discriminator"), dict):
            return self.choice(base, schema, path, depth)
        kind = schema.get("type")
        if kind == "object" and isinstance(schema.get("properties"), dict):
            return base.model_copy(update={"kind": "object", "fields": self.fields(schema, f"{path}.", depth + 1)})
        if kind == "array":
            item_kind = _scalar_kind(self.resolve(schema.get("items")))
            return base.model_copy(update={"kind": "list", "item_kind": item_kind}) if item_kind else base
        if isinstance(schema.get("enum"), list):
            return base.model_copy(update={"kind": "select", "options": list(schema["enum"])})
        if "const" in schema:
            return base.model_copy(update={"kind": "select", "options": [schema["const"]], "default": schema["const"]})
        if kind == "boolean":
            return base.model_copy(update={"kind": "boolean"})
        if kind in ("integer", "number"):
            return base.model_copy(
                update={"kind": kind, "minimum": schema.get("minimum"), "maximum": schema.get("maximum")}
            )
        if kind == "string":
            multiline = not base.secret and any("\n" in str(e) for e in schema.get("examples", []))
            return base.model_copy(update={"kind": "textarea" if multiline else "text"})
        return base

    def choice(self, base: FormField, schema: dict[str, Any], path: str, depth: int) -> FormField:
        tag = schema["discriminator"].get("propertyName")
        choices = []
        for raw in schema["oneOf"]:
            branch = self.resolve(raw)
            tag_schema = branch.get("properties", {}).get(tag, {})
            value = tag_schema.get("const", (tag_schema.get("enum") or [None])[0])
            if not isinstance(tag, str) or not isinstance(value, str):
                return base  # not a union this form can draw: JSON
            title = tag_schema.get("description") or branch.get("title") or value
            fields = [f for f in self.fields(branch, f"{path}.", depth + 1) if f.name != tag]
            choices.append(FormChoice(value=value, title=str(title), fields=fields))
        return base.model_copy(update={"kind": "choice", "discriminator": tag, "choices": choices})


def _scalar_kind(schema: dict[str, Any]) -> Literal["text", "integer", "number"] | None:
    kind = schema.get("type")
    if kind == "string":
        return "text"
    if kind in ("integer", "number"):
        return "integer" if kind == "integer" else "number"
    return None


def _placeholder(schema: dict[str, Any]) -> str | None:
    if schema.get("secret"):
        return None  # an example password in a password box reads like a stored one
    examples = schema.get("examples")
    if isinstance(examples, list) and examples and isinstance(examples[0], str | int | float):
        return str(examples[0])[:200]
    return None


FormChoice.model_rebuild()
FormField.model_rebuild()

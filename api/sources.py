"""Writes and reads of stored sources. Configurations are validated by their connector,
encrypted at rest, and only ever shown masked."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from api.accounts import default_workspace, find_workspace, new_id
from api.errors import InvalidConfigurationError, InvalidRequest, NotFound, SecretsRequired
from api.models import LastTest, Source, SourceCreate, SourcePublic, SourceUpdate, TestRecord, utcnow
from connectors.base import ConnectorConfig, destination_of, secret_paths
from connectors.errors import InvalidConfiguration, UnknownConnector
from connectors.registry import get_connector
from connectors.text import MASK
from worker.crypto import Cipher


def merge_configuration(stored: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with the fields of ``override``: a masked secret keeps its stored value;
    nested objects merge field by field unless their ``type`` changes (then replaced).
    Use :func:`merged_configuration`, which also binds stored secrets to their destination."""
    merged = dict(stored)
    for key, value in override.items():
        old = stored.get(key)
        if value == MASK and key in stored:
            continue
        if isinstance(value, dict) and isinstance(old, dict) and value.get("type", old.get("type")) == old.get("type"):
            merged[key] = merge_configuration(old, value)
        else:
            merged[key] = value
    return merged


def check_destination(
    definition_id: str, stored: dict[str, Any], override: dict[str, Any], merged: dict[str, Any]
) -> None:
    """Refuse to send a stored secret anywhere but where it was stored for.

    ``merged`` (the revealed dump of the validated merge of ``override`` into ``stored``) may
    connect elsewhere than ``stored`` (a field its connector's schema marks
    ``x-destination`` changed, or a nested object's ``type``): then every secret it holds
    must have been sent in ``override``, or SecretsRequired names those that were not."""
    schema = _specification(get_connector(definition_id).config_model)
    before, after = destination_of(schema, stored), destination_of(schema, merged)
    # A field left out (stored before the connector had it) is the same as null.
    changed = sorted(".".join(path) for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    if not changed:
        return
    reused = [".".join(path) for path in secret_paths(schema, merged) if not _sent(override, path)]
    if reused:
        raise SecretsRequired.naming(changed, reused)


@cache
def _specification(model: type[ConnectorConfig]) -> dict[str, Any]:
    return model.model_json_schema()


def _sent(override: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether ``override`` gives the value at ``path`` itself (not the mask, not left out)."""
    value: Any = override
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return value is not None and value != MASK


def merged_configuration(definition_id: str, stored: dict[str, Any], override: dict[str, Any]) -> ConnectorConfig:
    """``override`` merged into ``stored``, validated, and refused if it would take a stored
    secret to a new destination (see :func:`check_destination`)."""
    config = validate_configuration(definition_id, merge_configuration(stored, override))
    check_destination(definition_id, stored, override, config.revealed())
    return config


def validate_configuration(
    definition_id: str, configuration: dict[str, Any], *, field: str = "source_definition_id"
) -> ConnectorConfig:
    """The configuration parsed by its connector; InvalidRequest naming each bad field."""
    try:
        connector = get_connector(definition_id)
    except UnknownConnector as exc:
        raise InvalidRequest(str(exc), errors=None) from None
    try:
        return connector.parse_config(configuration)
    except InvalidConfiguration as exc:
        raise InvalidConfigurationError.from_connector(exc) from None


def find_source(session: Session, *, organization_id: str, source_id: str) -> Source:
    """The organization's source; NotFound also for another organization's."""
    source = session.get(Source, source_id)
    if source is None or source.organization_id != organization_id:
        raise NotFound(f"Source {source_id} not found")
    return source


def stored_configuration(cipher: Cipher, source: Source) -> dict[str, Any]:
    """The source's configuration with its secrets in clear (never send it to a caller)."""
    return cipher.decrypt_json(source.configuration_encrypted)


def masked_configuration(definition_id: str, stored: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with every secret field of its connector's schema masked, without validating it.

    Stored configurations were validated when written: showing one runs no validator (some,
    like a private key's, cost more than a read should). A field the schema no longer
    knows is masked too, in case it held a secret.
    """
    try:
        schema = get_connector(definition_id).connection_specification()
    except UnknownConnector:
        return {key: MASK for key in stored}
    return _mask(schema, schema, stored)


def _mask(root: dict[str, Any], schema: dict[str, Any], value: Any) -> Any:
    if "$ref" in schema:
        schema = root.get("$defs", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
    if schema.get("secret"):
        return MASK if value is not None else None
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return _mask(root, _branch(root, branches, value), value)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _mask(root, properties[k], v) if k in properties else MASK for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(root, schema.get("items", {}), item) for item in value]
    return value


def _branch(root: dict[str, Any], branches: list[dict[str, Any]], value: Any) -> dict[str, Any]:
    """The branch of a union ``value`` belongs to: by its ``type`` tag, else the first object or the secret one."""
    resolved = [root.get("$defs", {}).get(b["$ref"].rsplit("/", 1)[-1], {}) if "$ref" in b else b for b in branches]
    if isinstance(value, dict):
        for branch in resolved:
            tag = branch.get("properties", {}).get("type", {})
            if tag.get("const", (tag.get("enum") or [None])[0]) == value.get("type"):
                return branch
        return next((b for b in resolved if b.get("type") == "object" or "properties" in b), {})
    if any(b.get("secret") for b in resolved):
        return {"secret": True}
    return {}


def to_public(cipher: Cipher, source: Source, last_test: LastTest | None = None) -> SourcePublic:
    """The source as answered; ``last_test``: its newest recorded test (api.history.last_tests)."""
    configuration = masked_configuration(source.source_definition_id, stored_configuration(cipher, source))
    return SourcePublic(
        id=source.id,
        organization_id=source.organization_id,
        workspace_id=source.workspace_id,
        source_definition_id=source.source_definition_id,
        name=source.name,
        configuration=configuration,
        created_at=source.created_at,
        updated_at=source.updated_at,
        last_test=last_test,
    )


def create_source(session: Session, cipher: Cipher, *, organization_id: str, body: SourceCreate) -> Source:
    if body.workspace_id is not None:
        workspace = find_workspace(session, organization_id=organization_id, workspace_id=body.workspace_id)
        if workspace is None:
            raise NotFound(f"Workspace {body.workspace_id} not found")
    else:
        workspace = default_workspace(session, organization_id)
    config = validate_configuration(body.source_definition_id, body.configuration)
    source = Source(
        id=new_id("src"),
        organization_id=organization_id,
        workspace_id=workspace.id,
        source_definition_id=body.source_definition_id,
        name=body.name,
        configuration_encrypted=cipher.encrypt_json(config.revealed()),
    )
    session.add(source)
    session.commit()
    session.refresh(source)
    return source


def update_source(session: Session, cipher: Cipher, *, source: Source, body: SourceUpdate) -> Source:
    if body.name is not None:
        source.name = body.name
    if body.configuration is not None:
        config = merged_configuration(
            source.source_definition_id, stored_configuration(cipher, source), body.configuration
        )
        source.configuration_encrypted = cipher.encrypt_json(config.revealed())
    source.updated_at = utcnow()
    session.add(source)
    session.commit()
    session.refresh(source)
    return source


def delete_source(session: Session, *, source: Source) -> None:
    """Delete the source and its test history (also where foreign keys are not enforced: SQLite without the pragma)."""
    session.exec(delete(TestRecord).where(col(TestRecord.source_id) == source.id))
    session.delete(source)
    session.commit()


def list_sources(session: Session, *, organization_id: str, workspace_id: str | None = None) -> list[Source]:
    query = select(Source).where(Source.organization_id == organization_id)
    if workspace_id is not None:
        query = query.where(Source.workspace_id == workspace_id)
    return list(session.exec(query.order_by(col(Source.created_at))).all())


def reencrypt_sources(session: Session, cipher: Cipher) -> int:
    """Re-encrypt every stored source under ``cipher``'s first key; the number rewritten.

    Run after putting a new key first in SOURCECHECK_SECRET_KEYS: once it is done (and no
    job sent before is still queued) the old key can be dropped. Raises ``InvalidToken`` for
    a source no configured key opens, before anything is written.
    """
    sources = list(session.exec(select(Source)).all())
    rotated = [(source, cipher.rotate(source.configuration_encrypted)) for source in sources]
    for source, token in rotated:
        source.configuration_encrypted = token
        session.add(source)
    session.commit()
    return len(rotated)

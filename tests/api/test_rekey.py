"""Key rotation: ``sourcecheck rekey`` moves every stored source to the first key."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

from tests.servers.stack import BIN
from worker.crypto import Cipher, InvalidToken

CREATE = """
from sqlmodel import Session
from api.accounts import create_organization
from api.db import get_engine, init_db
from api.deps import get_cipher
from api.models import SourceCreate
from api.sources import create_source
init_db()
with Session(get_engine()) as session:
    create_organization(session, name="Rekey", organization_id="org_rekey")
    for i in range(3):
        body = SourceCreate(source_definition_id="http", name=f"s{i}",
                            configuration={"url": "http://x.example/", "auth": {"type": "bearer", "token": f"tok-{i}"}})
        create_source(session, get_cipher(), organization_id="org_rekey", body=body)
"""


def _tokens(database: Path) -> list[str]:
    with sqlite3.connect(database) as db:
        return [row[0] for row in db.execute("SELECT configuration_encrypted FROM source ORDER BY name")]


def test_rekey_reencrypts_every_source_under_the_first_key(tmp_path: Path) -> None:
    old, new, unrelated = (Fernet.generate_key().decode() for _ in range(3))
    database = tmp_path / "sourcecheck.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCECHECK_")}
    env |= {
        "SOURCECHECK_DATA_DIR": str(tmp_path),
        "SOURCECHECK_DATABASE_URL": f"sqlite:///{database}",
        "SOURCECHECK_SECRET_KEYS": old,
    }
    subprocess.run([sys.executable, "-c", CREATE], env=env, check=True, timeout=120)
    before = _tokens(database)
    assert len(before) == 3 and all(Cipher([old]).decrypt_json(t) for t in before)

    refused = subprocess.run(
        [str(BIN / "sourcecheck"), "rekey"],
        env=env | {"SOURCECHECK_SECRET_KEYS": unrelated},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "nothing was changed" in refused.stderr
    assert _tokens(database) == before

    done = subprocess.run(
        [str(BIN / "sourcecheck"), "rekey"],
        env=env | {"SOURCECHECK_SECRET_KEYS": f"{new},{old}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 3 sources" in done.stderr
    after = _tokens(database)
    assert [Cipher([new]).decrypt_json(t)["auth"]["token"] for t in after] == ["tok-0", "tok-1", "tok-2"]
    for token in after:  # the old key alone opens none of them any more
        try:
            Cipher([old]).decrypt_json(token)
        except InvalidToken:
            continue
        raise AssertionError("a source is still encrypted under the old key")

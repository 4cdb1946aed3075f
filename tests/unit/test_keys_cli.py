"""`invispose keys create|list|revoke` on the store a config names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from invispose.cli import main
from invispose.security import KeyRing, key_digest
from invispose.store import Store


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "spaces": [{"id": "lab", "size_m": [5, 4, 3]}],
        "store": {"path": str(tmp_path / "var" / "site.db")},
    }))
    return path


def test_create_list_and_revoke(config: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--config", str(config), "--scopes",
                 "pose:read,stream:subscribe", "--name", "wall display", "--quiet"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("ivp_") and "\n" not in key
    assert main(["keys", "list", "--config", str(config), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "wall display" and listed["active"]
    assert listed["scopes"] == ["pose:read", "stream:subscribe"]
    assert key not in json.dumps(listed)
    with Store(tmp_path / "var" / "site.db") as store:  # what a gateway would load
        ring = KeyRing()
        ring.replace(store.key_digests())
        assert ring.verify(key).scopes == {"pose:read", "stream:subscribe"}
        assert key_digest(key) == store.key_digests()[0][1]
    assert main(["keys", "revoke", "--config", str(config), listed["id"]]) == 0
    assert main(["keys", "list", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])[0]["active"] is False


def test_bad_scopes_and_unknown_ids_are_clear_errors(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "--config", str(config), "--scopes", "root"]) == 1
    assert "pose:read" in capsys.readouterr().err  # says which scopes exist
    assert main(["keys", "revoke", "--config", str(config), "0123456789ab"]) == 1
    assert "no active API key" in capsys.readouterr().err
    assert main(["keys", "revoke", "--config", str(config), "../x"]) == 1

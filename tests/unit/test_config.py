"""The configuration tree: shipped configs, env interpolation, and error paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from invispose.cli import main
from invispose.config import load_config, parse_config
from invispose.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLE_ENV = {"MQTT_PASSWORD": "pw", "WEBHOOK_SECRET": "s" * 32, "INVISPOSE_JWT_SECRET": "j" * 32}


def _default_tree() -> dict:
    return yaml.safe_load((CONFIGS / "default.yaml").read_text())


def test_default_config_is_three_simulated_routers_in_one_room() -> None:
    config = load_config(CONFIGS / "default.yaml", env={})
    assert [s.id for s in config.spaces] == ["living_room"]
    assert [r.kind for r in config.routers] == ["simulated"] * 3
    hardware = [r.source.hardware for r in config.routers]  # type: ignore[union-attr]
    assert sorted(hardware) == ["esp32", "intel5300", "intel5300"]
    assert config.auth.jwt_secret is None  # ${INVISPOSE_JWT_SECRET:-} unset → generated later


def test_site_example_covers_real_hardware() -> None:
    config = load_config(CONFIGS / "site.example.yaml", env=EXAMPLE_ENV)
    kinds = {r.kind for r in config.routers}
    assert {"esp32-udp", "nexmon-udp", "file"} <= kinds
    assert config.mqtt.password == "pw"
    assert config.webhooks.endpoints[0].secret == "s" * 32


def test_missing_env_var_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "site.example.yaml", env={})
    assert info.value.problems[0][0] == "mqtt.password"


def test_every_error_has_its_field_path() -> None:
    tree = _default_tree()
    tree["routers"][0]["source"]["rate_hz"] = -5
    tree["routers"][1]["kind"] = "bluetooth"
    tree["spaces"][0]["colour"] = "blue"
    with pytest.raises(ConfigError) as info:
        parse_config(tree, env={})
    locs = [loc for loc, _ in info.value.problems]
    assert "routers.0.source.simulated.rate_hz" in locs
    assert any(loc.startswith("routers.1.kind") for loc in locs)
    assert "spaces.0.colour" in locs


def test_cross_references_are_checked() -> None:
    tree = _default_tree()
    tree["zones"][0]["space"] = "kitchen"
    tree["routers"][1]["id"] = "router_a"
    with pytest.raises(ConfigError) as info:
        parse_config(tree, env={})
    message = str(info.value)
    assert "unknown space 'kitchen'" in message
    assert "duplicate router ids: router_a" in message


def test_every_field_is_described() -> None:
    from pydantic import BaseModel

    from invispose import config as module

    models = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == module.__name__
    ]
    assert len(models) > 10
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_config_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(CONFIGS / "default.yaml")]) == 0
    bad = _default_tree()
    bad["routers"][0]["tx_positions_m"] = "here"
    bad["mqtt"]["port"] = 1883
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["config", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "routers.0.tx_positions_m" in err
    assert "mqtt.port" in err
    path.write_text("spaces: [unclosed")
    assert main(["config", "check", str(path)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_model_classical_shorthand_names_the_estimator() -> None:
    spaces = [{"id": "room", "size_m": [5.0, 4.0, 2.7]}]
    site = parse_config({"spaces": spaces, "model": "classical"})
    assert site.model.estimator == "classical"
    assert parse_config({"spaces": spaces}).model.estimator == "learned"
    with pytest.raises(ConfigError, match="model"):
        parse_config({"spaces": spaces, "model": "magic"})

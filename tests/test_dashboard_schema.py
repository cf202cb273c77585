"""The generated dashboard against Grafana's own published schema: the types of Grafana's
grafana-foundation-sdk (generated from the schema Grafana itself is built from), and the
provisioning files that must not clash with an existing Grafana."""

from __future__ import annotations

import copy
import enum
import json
import re
import types
import typing

import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import units
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import build, preview
from tests.support import ROOT

plugins.register_default_plugins()  # the panels' options and the Prometheus query types
DATASOURCES = [
    ROOT / "dashboards/provisioning/datasources/prometheus.yaml",
    ROOT / "deploy/grafana/datasource.yaml",
]


def schema_problems(board_json: dict) -> list[str]:
    """What Grafana's schema types do not accept: keys they do not know (lost when the JSON is
    read into them and written back), and values of the wrong type or outside an enum."""
    board = Dashboard.from_json(copy.deepcopy(board_json))
    found: list[str] = []
    _contained(board_json, json.loads(json.dumps(board, cls=JSONEncoder)), "$", found)
    _typed(board, "$", found)
    return found


def _contained(given: object, parsed: object, path: str, found: list[str]) -> None:
    if isinstance(given, dict):
        if not isinstance(parsed, dict):
            found.append(f"{path}: an object where the schema has {type(parsed).__name__}")
            return
        for key, value in given.items():
            if key not in parsed:
                found.append(f"{path}.{key}: not in the schema")
            else:
                _contained(value, parsed[key], f"{path}.{key}", found)
    elif isinstance(given, list):
        if not isinstance(parsed, list) or len(parsed) != len(given):
            found.append(f"{path}: the list is not read as a list of as many")
            return
        for i, (a, b) in enumerate(zip(given, parsed, strict=True)):
            _contained(a, b, f"{path}[{i}]", found)
    elif given != parsed:
        found.append(f"{path}: {given!r} is read as {parsed!r}")


def _typed(obj: object, path: str, found: list[str]) -> None:
    if isinstance(obj, UnknownDataquery | enum.Enum):
        return
    for name, hint in typing.get_type_hints(type(obj)).items():
        value = getattr(obj, name, None)
        if not _matches(value, hint):
            found.append(f"{path}.{name}: {value!r} is not {hint}")
        _walk(value, f"{path}.{name}", found)


def _walk(value: object, path: str, found: list[str]) -> None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            _walk(item, f"{path}[{i}]", found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}", found)
    elif callable(getattr(type(value), "to_json", None)):
        _typed(value, path, found)


def _matches(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        _, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_matches(v, item) for v in value.values())
    if hint is type(None):
        return value is None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value in {member.value for member in hint} or isinstance(value, hint)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return not isinstance(hint, type) or isinstance(value, hint)


def test_the_dashboard_is_what_grafanas_schema_types_accept():
    board = json.loads(build.OUT.read_text())
    assert schema_problems(board) == []


def test_the_check_finds_what_grafana_would_not_accept():
    board = json.loads(build.render())
    panel = next(p for p in board["panels"] if p["type"] == "timeseries")
    panel["gridPos"]["h"] = "8"
    panel["options"]["legend"]["placement"] = "middle"
    panel["options"]["legend"]["colour"] = "red"
    panel["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "dots"}
    board["refresh"] = 30
    found = "\n".join(schema_problems(board))
    for expected in (
        "grid_pos.h: '8'",
        "legend.placement: 'middle'",
        "legend.colour: not in the schema",
        "custom.draw_style: 'dots'",
        "$.refresh: 30",
    ):
        assert expected in found, (expected, found)


GRAFANA_UNITS = {
    value
    for name, value in vars(units).items()
    if not name.startswith("_") and isinstance(value, str)
}


def test_every_panel_has_one_grafana_unit_which_the_preview_names():
    for _, panel in build.panels():
        assert panel.unit in GRAFANA_UNITS, (panel.title, panel.unit)
        # The preview labels its axes with words, never the Grafana id.
        label = preview.UNIT_LABELS[panel.unit]
        assert label and label != panel.unit, (panel.unit, label)


def test_uids_and_ids_are_unique_and_well_formed():
    board = json.loads(build.OUT.read_text())
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]) and board["uid"] == build.UID
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "the preview finds panels by title"
    cells = set()
    for p in board["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine


def test_provisioning_clashes_with_nothing_an_existing_grafana_has():
    for path in DATASOURCES:
        (source,) = yaml.safe_load(path.read_text())["datasources"]
        assert source["isDefault"] is False, path  # never takes over a Grafana's default
        assert source["uid"] == build.DATASOURCE_UID and source["name"] == build.DATASOURCE_NAME
        assert source["type"] == "prometheus"
    board = json.loads(build.OUT.read_text())
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == build.DATASOURCE_UID
    providers = yaml.safe_load(
        (ROOT / "dashboards/provisioning/dashboards/otp-tracker.yaml").read_text()
    )["providers"]
    assert [p["folder"] for p in providers] == ["OTP"] and providers[0]["name"] == "otp-tracker"

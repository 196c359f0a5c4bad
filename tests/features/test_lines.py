"""The line table: defaults, validation rules, dict round trip and config overrides."""

from __future__ import annotations

import json

import pytest

from libs_pipeline.features.lines import LineWindow, default_lines, known_analytes, resolve_lines


def test_defaults_for_cu_and_na():
    cu = default_lines("Cu")
    assert [l.name for l in cu] == ["Cu I 324.75", "Cu I 327.40"]
    assert all(l.element == "Cu" for l in cu)
    na = default_lines("Na")
    assert len(na) == 1 and na[0].window_nm == (817.8, 820.2)  # the reference univariate window
    assert "Cu" in known_analytes() and "Na" in known_analytes()
    # Both air and vacuum wavelengths of the Cu resonance lines are inside their windows.
    for line, (air, vac) in zip(cu, [(324.754, 324.847), (327.396, 327.490)]):
        assert line.window_nm[0] < air - 0.3 and vac + 0.3 < line.window_nm[1]


def test_default_lines_returns_a_copy():
    lines = default_lines("Cu")
    lines.pop()
    assert len(default_lines("Cu")) == 2


def test_unknown_analyte_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no default emission lines for analyte 'Zr'; known: \['Cu', 'Na'\]"):
        default_lines("Zr")


def test_dict_round_trip_through_json():
    for line in default_lines("Cu") + default_lines("Na"):
        back = LineWindow.from_dict(json.loads(json.dumps(line.to_dict())))
        assert back == line and hash(back) == hash(line)


def test_lists_are_normalised_to_tuples():
    line = LineWindow("x", "Cu", 1.5, [1.0, 2.0], [[0.0, 0.5], [2.5, 3]])
    assert line.window_nm == (1.0, 2.0) and line.background_nm == ((0.0, 0.5), (2.5, 3.0))
    assert line.span_nm == (0.0, 3.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": ""}, "name must be non-empty"),
        ({"name": "a:b"}, "must not contain ':'"),
        ({"element": ""}, "element must be non-empty"),
        ({"window_nm": (2.0, 1.0)}, "low < high"),
        ({"center_nm": 5.0}, "lies outside window_nm"),
        ({"background_nm": ()}, "at least one"),
        ({"background_nm": ((0.5, 0.4),)}, r"background window \(0.5, 0.4\) must be"),
        ({"background_nm": ((0.5, 1.2),)}, "overlaps the line window"),
        ({"center_nm": float("nan")}, "finite"),
    ],
)
def test_validation_rules(kwargs, message):
    fields = {"name": "L", "element": "Cu", "center_nm": 1.5, "window_nm": (1.0, 2.0), "background_nm": ((0.0, 0.5),)}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        LineWindow(**fields)


def test_from_dict_rejects_unknown_and_missing_keys():
    d = default_lines("Cu")[0].to_dict()
    with pytest.raises(ValueError, match=r"unknown keys \['width'\], missing keys \[\]"):
        LineWindow.from_dict({**d, "width": 1})
    del d["element"]
    with pytest.raises(ValueError, match=r"missing keys \['element'\]"):
        LineWindow.from_dict(d)


def test_resolve_lines_defaults_and_overrides():
    assert resolve_lines("Cu") == default_lines("Cu")
    custom = {"name": "Cu I 510.55", "element": "Cu", "center_nm": 510.554, "window_nm": [510.2, 510.9],
              "background_nm": [[509.5, 510.0], [511.1, 511.6]]}
    lines = resolve_lines("Cu", [custom, default_lines("Cu")[0]])
    assert [l.name for l in lines] == ["Cu I 510.55", "Cu I 324.75"]
    with pytest.raises(ValueError, match="override is empty"):
        resolve_lines("Cu", [])
    with pytest.raises(ValueError, match="used more than once"):
        resolve_lines("Cu", [custom, custom])

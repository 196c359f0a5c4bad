"""Campaign manifests: YAML and CSV formats, per-entry rejections, whole-manifest errors."""

from __future__ import annotations

import math
import textwrap

import pytest

from libs_pipeline.spectra.campaign_manifest import ManifestError, read_campaign_manifest


def _yaml(tmp_path, body: str, name: str = "m.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _rules(entry) -> set[str]:
    return {f.rule for f in entry.findings}


def test_yaml_manifest(tmp_path):
    path = _yaml(tmp_path, """\
        name: toy
        units: wt%
        matrix: Al
        samples:
          - sample_id: A
            file: a.txt
            labels: {Cu: 1.5, Mg: 0.5}
          - sample_id: B
            file: sub/b.csv
            reader: spectrum_rows
            matrix: steel
            labels: {Cu: {value: 2, units: wt%}}
          - sample_id: C
            file: c.zarr
            labels: {Cu: null, Mg: 2}
        """)
    m = read_campaign_manifest(path)
    assert (m.name, m.format) == ("toy", "yaml")
    a, b, c = m.entries
    assert all(e.ok for e in m.entries)
    assert (a.sample_id, a.file, a.reader, a.matrix, a.line) == ("A", "a.txt", "auto", "Al", 5)
    assert a.labels == {"Cu": (1.5, "wt%"), "Mg": (0.5, "wt%")}
    assert a.path == (tmp_path / "a.txt").resolve()
    assert (b.reader, b.matrix, b.labels) == ("spectrum_rows", "steel", {"Cu": (2.0, "wt%")})
    assert c.reader == "dataset" and math.isnan(c.labels["Cu"][0])
    table = m.entry_table()
    assert list(table["sample_id"]) == ["A", "B", "C"] and table.loc[1, "Cu_wt%"] == 2.0


def test_real_oreas_table_is_a_valid_manifest(oreas_dir):
    m = read_campaign_manifest(oreas_dir / "Na_ppm_from_tutorial.csv")
    assert m.format == "csv" and m.name is None
    assert len(m.valid_entries) == 7
    first = m.entries[0]
    assert (first.sample_id, first.file, first.labels, first.line) == ("OREAS45e", "OREAS45e_7.txt", {"Na": (594.0, "ppm")}, 2)


def test_csv_manifest_columns_units_and_values(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(
        "file,sample_id,Na_ppm,Cu_wt%,K_mgkg,notes\n"
        "a.txt,A,594,,,first\n"
        "b.txt,B,abc,1,,\n"
        "c.txt,C,12,,5,\n"
        "d.txt,D,-1,,,\n"
        "e.txt,E,2000000,,,\n"
        "f.txt,F,,,,\n"
        "g.txt,A,594,,,\n"
    )
    m = read_campaign_manifest(path)
    a, b, c, d, e, f, g = m.entries
    assert a.ok and a.labels == {"Na": (594.0, "ppm")}
    assert g.ok  # the same sample in a second file, same labels
    assert _rules(b) == {"non_numeric_label"}
    assert _rules(c) == {"label_unit"} and "mgkg" in c.findings[0].reason
    assert _rules(d) == {"label_range"}
    assert _rules(e) == {"label_range"}
    assert f.ok and f.labels == {} and not f.certified  # no label: an unknown sample, to be predicted
    assert a.certified
    assert m.ignored_columns == ["notes"]
    assert "m.csv line 3" in b.findings[0].coordinate


@pytest.mark.parametrize(
    ("sample_id", "file", "rule"),
    [
        ("'../x'", "a.txt", "unsafe_sample_id"),
        ("/abs", "a.txt", "unsafe_sample_id"),
        ("a/b", "a.txt", "unsafe_sample_id"),
        ("A", "../outside.txt", "unsafe_path"),
        ("A", "/etc/passwd", "unsafe_path"),
        ("A", "sub/../../x.txt", "unsafe_path"),
        ("007", "a.txt", "sample_id_type"),
    ],
)
def test_unsafe_ids_and_paths_are_rejected(tmp_path, sample_id, file, rule):
    path = _yaml(tmp_path, f"""\
        samples:
          - sample_id: {sample_id}
            file: {file}
            labels: {{Cu: 1}}
            units: wt%
        """)
    (entry,) = read_campaign_manifest(path).entries
    assert rule in _rules(entry)


def test_symlink_escaping_the_folder_is_rejected(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("300,1\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "link.txt").symlink_to(outside)
    path = _yaml(tmp_path / "m", "samples: [{sample_id: A, file: link.txt, units: ppm, labels: {Na: 1}}]\n")
    assert _rules(read_campaign_manifest(path).entries[0]) == {"unsafe_path"}


def test_units_duplicates_and_conflicts(tmp_path):
    path = _yaml(tmp_path, """\
        units: wt%
        samples:
          - {sample_id: A, file: a.txt, labels: {Cu: 1}}
          - {sample_id: B, file: b.txt, labels: {Cu: 5}, units: ppm}
          - {sample_id: C, file: c.txt, labels: {Cu: 1}, units: mg/kg}
          - {sample_id: D, file: d.txt, labels: {Cu: 1}}
          - {sample_id: D, file: d.txt, labels: {Cu: 1}}
          - {sample_id: E, file: e1.txt, labels: {Cu: 1}}
          - {sample_id: E, file: e2.txt, labels: {Cu: 2}}
          - {sample_id: F, file: f.txt, labels: {Cu: 1, "cu x": 2}}
          - {sample_id: G, file: g.txt}
        """)
    a, b, c, d1, d2, e1, e2, f, g = read_campaign_manifest(path).entries
    assert a.ok
    assert _rules(b) == {"unit_mismatch"}
    assert "label_unit" in _rules(c)
    assert "duplicate_entry" in _rules(d1) and "duplicate_entry" in _rules(d2)
    assert _rules(e1) == _rules(e2) == {"conflicting_labels"}
    assert _rules(f) == {"bad_label_name"}
    assert g.ok and not g.certified  # no labels: an unknown sample


@pytest.mark.parametrize(
    ("name", "content", "rule"),
    [
        ("m.yaml", "samples: [\n  {sample_id: A", "manifest_syntax"),
        ("m.yaml", "just a string\n", "manifest_structure"),
        ("m.yaml", "samples: []\n", "manifest_structure"),
        ("m.csv", "path,sample\na.txt,A\n", "missing_column"),
        ("m.csv", "file,sample\n", "manifest_structure"),
        ("m.csv", "", "empty_file"),
        ("m.json", "{}", "manifest_format"),
    ],
)
def test_unusable_manifests_raise(tmp_path, name, content, rule):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ManifestError) as info:
        read_campaign_manifest(path)
    assert info.value.finding.rule == rule and info.value.finding.file == name


def test_missing_manifest_raises(tmp_path):
    with pytest.raises(ManifestError, match="no such file"):
        read_campaign_manifest(tmp_path / "nope.yaml")

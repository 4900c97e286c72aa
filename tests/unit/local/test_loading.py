"""Files -> validated PingSources: documents, defaults, problems with file:document locations."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest

from mtping.local.loading import (
    Origin,
    Problem,
    content_version,
    find_files,
    load_file,
    local_uid,
    with_local_defaults,
)
from mtping.model import SourceKey, parse_source

SAMPLES = Path(__file__).parents[3] / "config" / "samples"

PING = """\
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: {name}
spec:
  schedule: "{schedule}"
  data: '{{"n": 1}}'
  sink:
    uri: http://127.0.0.1:9/
"""


def ping(name: str = "ping", schedule: str = "* * * * *") -> str:
    return PING.format(name=name, schedule=schedule)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_tutorial_sample_loads_as_is() -> None:
    load = load_file(SAMPLES / "hello-world.yaml", parse=parse_source)
    assert load.ok and load.skipped == 0
    [source] = load.sources
    assert source.spec.key == SourceKey("default", "test-ping-source")
    assert source.spec.content_type == "application/json"
    assert source.spec.data == b'{"message": "hello, world!"}'
    assert source.origin == Origin(str(SAMPLES / "hello-world.yaml"), 1)


def test_defaults_namespace_uid_and_a_content_hash_as_resource_version() -> None:
    obj = with_local_defaults({"metadata": {"name": "ping", "resourceVersion": "42"}, "spec": {}})
    metadata = obj["metadata"]
    assert metadata["namespace"] == "default"
    # Documented formula: UUIDv5 of "namespace/name" under a fixed namespace.
    fixed = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mtping:local-pingsource-uid")
    assert metadata["uid"] == str(uuid.uuid5(fixed, "default/ping")) == local_uid("default", "ping")
    assert metadata["resourceVersion"] != "42"  # a copied resourceVersion must not hide edits
    assert metadata["resourceVersion"] == content_version(
        {"metadata": {"name": "ping", "namespace": "default", "uid": metadata["uid"]}, "spec": {}}
    )


def test_written_namespace_and_uid_are_kept() -> None:
    metadata = {"name": "ping", "namespace": "team-a", "uid": "from-the-cluster"}
    obj = with_local_defaults({"metadata": metadata})
    assert obj["metadata"]["namespace"] == "team-a"
    assert obj["metadata"]["uid"] == "from-the-cluster"


def test_resource_version_is_stable_for_equal_content_and_changes_with_it() -> None:
    first = with_local_defaults({"metadata": {"name": "a"}, "spec": {"schedule": "* * * * *"}})
    again = with_local_defaults({"metadata": {"name": "a"}, "spec": {"schedule": "* * * * *"}})
    edited = with_local_defaults({"metadata": {"name": "a"}, "spec": {"schedule": "0 * * * *"}})
    assert first["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
    assert first["metadata"]["resourceVersion"] != edited["metadata"]["resourceVersion"]


def test_multi_document_yaml_skips_other_kinds_and_empty_documents(tmp_path: Path) -> None:
    service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: event-display\n"
    path = write(
        tmp_path, "all.yaml", f"---\n{ping('a')}---\n{service}---\n# empty\n---\n{ping('b')}"
    )
    load = load_file(path, parse=parse_source)
    assert load.ok
    assert load.skipped == 1
    assert [(s.spec.key.name, s.origin.document) for s in load.sources] == [("a", 1), ("b", 4)]


def test_a_list_document_is_flattened_and_item_problems_name_the_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "list.yaml",
        """\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: sources.knative.dev/v1
          kind: PingSource
          metadata: {name: good}
          spec: {sink: {uri: "http://127.0.0.1:9/"}}
        - apiVersion: sources.knative.dev/v1
          kind: PingSource
          metadata: {name: bad}
          spec: {schedule: "99 * * * *", sink: {uri: "http://127.0.0.1:9/"}}
        """,
    )
    load = load_file(path, parse=parse_source)
    assert [source.spec.key.name for source in load.sources] == ["good"]
    [problem] = load.problems
    assert str(problem).startswith(f"{path}:1: items[1].spec.schedule: invalid schedule")


def test_invalid_sources_are_reported_per_field_with_file_and_document(tmp_path: Path) -> None:
    bad = ping("bad", "61 * * * *").replace("uri: http://127.0.0.1:9/", "uri: relative/path")
    path = write(tmp_path, "two.yaml", f"{ping('ok')}---\n{bad}")
    load = load_file(path, parse=parse_source)
    assert [source.spec.key.name for source in load.sources] == ["ok"]
    assert [(p.origin, p.field) for p in load.problems] == [
        (Origin(str(path), 2), "spec.schedule"),
        (Origin(str(path), 2), "spec.sink.uri"),
    ]
    assert str(load.problems[0]) == (
        f"{path}:2: spec.schedule: invalid schedule '61 * * * *': "
        "minute field '61' out of range 0-59"
    )


def test_a_yaml_syntax_error_names_its_document_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.yaml", f"{ping('a')}---\nmetadata:\n  name: [unclosed\n")
    load = load_file(path, parse=parse_source)
    assert [source.spec.key.name for source in load.sources] == ["a"]  # documents before it
    [problem] = load.problems
    assert problem.origin == Origin(str(path), 2) and problem.field == "yaml"
    assert problem.reason == (  # the error is at the end of the file: line 13
        "line 13, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"
    )


def test_json_files_and_their_syntax_errors(tmp_path: Path) -> None:
    good = write(
        tmp_path,
        "ping.json",
        '{"apiVersion": "sources.knative.dev/v1", "kind": "PingSource",'
        ' "metadata": {"name": "j"}, "spec": {"sink": {"uri": "http://127.0.0.1:9/"}}}',
    )
    assert [s.spec.key.name for s in load_file(good, parse=parse_source).sources] == ["j"]
    broken = write(tmp_path, "broken.json", '{"kind": "PingSource",\n "metadata": }')
    assert [str(p) for p in load_file(broken, parse=parse_source).problems] == [
        f"{broken}:1: json: line 2, column 14: Expecting value"
    ]


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("- a\n- b\n", "(root)", "expected an object, got array"),
        ("metadata: {name: x}\n", "kind", "missing; expected PingSource"),
        (
            "apiVersion: example.com/v1\nkind: PingSource\nmetadata: {name: x}\n"
            "spec: {sink: {uri: 'http://127.0.0.1:9/'}}\n",
            "apiVersion",
            "must be sources.knative.dev/v1 (or v1beta1), got 'example.com/v1'",
        ),
    ],
)
def test_documents_that_are_not_ping_sources(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = write(tmp_path, "odd.yaml", text)
    load = load_file(path, parse=parse_source)
    assert load.sources == ()
    assert load.problems[0] == Problem(Origin(str(path), 1), field, reason)


def test_timestamps_stay_text_as_in_kubernetes(tmp_path: Path) -> None:
    text = ping("t").replace("name: t", "name: t\n  creationTimestamp: 2026-01-01T00:00:00Z")
    text = text.replace("""data: '{"n": 1}'""", "data: 2026-01-01")
    path = write(tmp_path, "t.yaml", text)
    [source] = load_file(path, parse=parse_source).sources
    assert source.spec.data == b"2026-01-01"
    assert source.obj["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"


def test_an_unreadable_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: \xe9\n")
    [problem] = load_file(path, parse=parse_source).problems
    assert problem.field == "file" and problem.reason.startswith("cannot read:")


def test_find_files_expands_folders_and_skips_editor_files(tmp_path: Path) -> None:
    for name in ("b.yaml", "a.yml", "c.json", "notes.txt", ".hidden.yaml", "#a.yaml#", ".#b.yaml"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.yaml").write_text("")
    explicit = tmp_path / "notes.txt"
    found = find_files([tmp_path, explicit, tmp_path / "missing.yaml", tmp_path / "b.yaml"])
    assert [path.name for path in found] == ["a.yml", "b.yaml", "c.json", "notes.txt"]

"""Files in, validated PingSources (or problems naming file and document) out.

A PATH is a file, or a folder whose `*.yaml`, `*.yml` and `*.json` files are read (not its
subfolders, like `kubectl apply -f`; names starting with `.` or `#` are editor droppings and
skipped). YAML files may hold several `---`-separated documents; a document may be a `List`
(`kubectl get -o yaml` output). Documents of other kinds are skipped, so a folder of mixed
manifests works. Documents are numbered from 1 in file order, empty ones included, and every
problem is reported as `file:document: field: reason`.

What a cluster would fill in is filled in here, the same way every time:
- `metadata.namespace` defaults to `default`;
- `metadata.uid`, when absent, is a UUIDv5 of `namespace/name` under a fixed namespace, so a
  source keeps its uid, and therefore its event ids, across edits and restarts (a uid written
  in the file, as in `kubectl get -o yaml` output, is kept);
- `metadata.resourceVersion` is always replaced by a hash of the document, so the registry
  treats an unchanged document as a no-op and any edit as a change (a stale resourceVersion
  copied from a cluster must not hide an edit).

Validation is the model's own (`parse_source`, with the engine's settings), so a file that
loads here is scheduled identically. This module reads files; it never schedules or sends.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from mtping.lifecycle import Parse
from mtping.model import InvalidSource, PingSourceSpec
from mtping.model.reader import json_type

MANIFEST_SUFFIXES: Final = frozenset({".yaml", ".yml", ".json"})
DEFAULT_NAMESPACE: Final = "default"
GROUP: Final = "sources.knative.dev"
KIND: Final = "PingSource"
# Fixed forever: changing it changes the uid, hence every event id, of every local source.
LOCAL_UID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:mtping:local-pingsource-uid")


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings, as Kubernetes' YAML-to-JSON does: a
    `creationTimestamp` or an unquoted date must reach the model as text, not a datetime."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a document came from: its file and its 1-based position in it; `item` is its
    index in a List document's `items`."""

    path: str
    document: int
    item: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.document}"

    def qualify(self, field: str) -> str:
        """`field` as a path from the document's root."""
        return field if self.item is None else f"items[{self.item}].{field}"


@dataclass(frozen=True, slots=True)
class Problem:
    origin: Origin
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.origin.qualify(self.field)}: {self.reason}"


@dataclass(frozen=True, slots=True)
class LocalSource:
    """A valid PingSource document: `obj` (defaulted) goes to the registry, `spec` is its
    parse, kept for reporting."""

    origin: Origin
    obj: dict[str, Any]
    spec: PingSourceSpec

    @property
    def version(self) -> str:
        return str(self.obj["metadata"]["resourceVersion"])


@dataclass(frozen=True, slots=True)
class FileLoad:
    """One reading of one file: its valid sources, its problems, and how many documents of
    other kinds it skipped."""

    path: str
    sources: tuple[LocalSource, ...]
    problems: tuple[Problem, ...]
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def find_files(paths: Iterable[Path]) -> list[Path]:
    """The files PATHs name, folders expanded, sorted within each folder; missing paths give
    nothing (a file deleted while watched is simply gone)."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            found.update(dict.fromkeys(_manifests_in(path)))
        elif path.is_file():
            found[path] = None
    return list(found)


def _manifests_in(folder: Path) -> list[Path]:
    try:
        children = list(folder.iterdir())
    except OSError:  # removed or unreadable since is_dir(): nothing to read now
        return []
    return sorted(child for child in children if _is_manifest(child))


def _is_manifest(path: Path) -> bool:
    return (
        path.suffix.lower() in MANIFEST_SUFFIXES
        and not path.name.startswith((".", "#"))
        and path.is_file()
    )


def load_file(path: Path, *, parse: Parse) -> FileLoad:
    """Read, default and validate every document of `path`; never raises on bad content."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return FileLoad(name, (), (Problem(Origin(name, 1), "file", f"cannot read: {error}"),))
    reader = _read_json if path.suffix.lower() == ".json" else _read_yaml
    documents, syntax_problem = reader(text, name)
    sources: list[LocalSource] = []
    problems: list[Problem] = []
    skipped = 0
    for origin, document in _entries(name, documents, problems):
        if not _is_ping_source(origin, document, problems):
            skipped += 1
            continue
        source = _validated(origin, document, parse, problems)
        if source is not None:
            sources.append(source)
    if syntax_problem is not None:
        problems.append(syntax_problem)
    return FileLoad(name, tuple(sources), tuple(problems), skipped)


# --- syntax ---------------------------------------------------------------------------------


def _read_yaml(text: str, name: str) -> tuple[list[object], Problem | None]:
    """The documents before any syntax error, and that error (in the next document)."""
    documents: list[object] = []
    try:
        documents.extend(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as error:
        return documents, Problem(Origin(name, len(documents) + 1), "yaml", _yaml_reason(error))
    return documents, None


def _yaml_reason(error: yaml.YAMLError) -> str:
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return str(error)
    mark = error.problem_mark
    problem = error.problem or "syntax error"
    context = f" ({error.context})" if error.context else ""
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"


def _read_json(text: str, name: str) -> tuple[list[object], Problem | None]:
    try:
        return [json.loads(text)], None
    except json.JSONDecodeError as error:
        reason = f"line {error.lineno}, column {error.colno}: {error.msg}"
        return [], Problem(Origin(name, 1), "json", reason)


# --- documents ------------------------------------------------------------------------------


def _entries(
    name: str, documents: list[object], problems: list[Problem]
) -> Iterator[tuple[Origin, Mapping[str, Any]]]:
    """Every object to consider, List documents flattened; non-objects become problems."""
    for number, document in enumerate(documents, start=1):
        if document is None:  # an empty document: `---` at the end, or only comments
            continue
        origin = Origin(name, number)
        if not isinstance(document, Mapping):
            problems.append(
                Problem(origin, "(root)", f"expected an object, got {json_type(document)}")
            )
        elif _is_list(document):
            yield from _items(origin, document["items"], problems)
        else:
            yield origin, document


def _is_list(document: Mapping[str, Any]) -> bool:
    kind = document.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in document


def _items(
    origin: Origin, items: object, problems: list[Problem]
) -> Iterator[tuple[Origin, Mapping[str, Any]]]:
    if not isinstance(items, list):
        problems.append(Problem(origin, "items", f"must be an array, got {json_type(items)}"))
        return
    for index, item in enumerate(items):
        item_origin = Origin(origin.path, origin.document, index)
        if isinstance(item, Mapping):
            yield item_origin, item
        else:
            problems.append(
                Problem(item_origin, "(root)", f"expected an object, got {json_type(item)}")
            )


def _is_ping_source(origin: Origin, document: Mapping[str, Any], problems: list[Problem]) -> bool:
    """True for a PingSource; False (skip it) for another kind. A missing kind, or a
    PingSource of another API group, is a problem, reported, and also not a PingSource."""
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        problems.append(Problem(origin, "kind", f"missing; expected {KIND}"))
        return True
    if kind != KIND:
        return False
    if not isinstance(api_version, str) or api_version.partition("/")[0] != GROUP:
        problems.append(
            Problem(origin, "apiVersion", f"must be {GROUP}/v1 (or v1beta1), got {api_version!r}")
        )
    return True


def _validated(
    origin: Origin, document: Mapping[str, Any], parse: Parse, problems: list[Problem]
) -> LocalSource | None:
    obj = with_local_defaults(document)
    try:
        spec = parse(obj)
    except InvalidSource as invalid:
        problems.extend(Problem(origin, error.path, error.reason) for error in invalid.errors)
        return None
    if any(problem.origin == origin for problem in problems):
        return None  # kind or apiVersion is wrong: valid fields do not make it a PingSource
    return LocalSource(origin, obj, spec)


# --- defaults -------------------------------------------------------------------------------


def with_local_defaults(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `document` with namespace, uid and resourceVersion filled in (see the
    module docstring); a malformed metadata is left for validation to report."""
    obj = dict(document)
    raw_metadata = document.get("metadata")
    if not isinstance(raw_metadata, Mapping):
        return obj
    metadata = {key: value for key, value in raw_metadata.items() if key != "resourceVersion"}
    if not metadata.get("namespace"):
        metadata["namespace"] = DEFAULT_NAMESPACE
    namespace, name = metadata["namespace"], metadata.get("name")
    if not metadata.get("uid") and isinstance(namespace, str) and isinstance(name, str):
        metadata["uid"] = local_uid(namespace, name)
    obj["metadata"] = metadata
    metadata["resourceVersion"] = content_version(obj)
    return obj


def local_uid(namespace: str, name: str) -> str:
    """The uid of a source whose file gives none: stable for a given namespace/name."""
    return str(uuid.uuid5(LOCAL_UID_NAMESPACE, f"{namespace}/{name}"))


def content_version(obj: Mapping[str, Any]) -> str:
    # repr, not JSON: YAML can produce values JSON cannot encode (bytes, non-string keys), and
    # the same text always loads into the same objects, hence the same repr.
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]

"""Read, parse and validate the rule files in `rules/` and the policy test kit in `rules/tests/`.

A bad rules directory is refused as a whole, with an error naming the file, the rule and the
problem, so a service never starts (or reloads) on half a policy. Every file is read with a
byte bound, parsed with a bound on what its aliases expand to, checked for numbers the rule
engine cannot take (service.adapters.rule_engine) and against its schema (schemas.rules);
what the rules mean is checked as the RuleBook is built (service.domain.rulebook.build).
The kit's files are read and parsed with the same bounds (service.domain.policy_kit.build_kit).
"""
from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import yaml
from marshmallow import ValidationError

from schemas.rules import (ExplanationsFileSchema, LimitsFileSchema, ProductsFileSchema,
                           RecourseFileSchema, RuleFileSchema, TimeFileSchema)
from service.adapters.rule_engine import LIMITS, number_problem
from service.domain import policy_kit, rulebook
from service.domain.policy_kit import Kit, KitError
from service.domain.rulebook import (EXPLANATIONS_FILE, LIMITS_FILE, PRODUCTS_FILE, RECOURSE_FILE,
                                     TIME_FILE, RuleBook, RulesError)
from service.usecases.policy_tests import KIT_DIR

# The whole directory is read into memory, parsed and archived in Redis on every reload: a
# rules file is a few KiB, so these caps leave ample room and refuse a runaway file early.
MAX_FILE_BYTES = 256 * 1024
MAX_DIRECTORY_BYTES = 1024 * 1024
# The bundled rule and kit files expand to at most ~500 YAML nodes each (eligibility.yaml:
# 481, about 18 bytes a node), so a file of MAX_FILE_BYTES written like them holds ~15,000;
# aliases are what goes past this (a 440-byte bomb of nine levels expands to 9**9 nodes).
MAX_YAML_NODES = 100_000
# The kit: `<rules dir>/tests/*.yaml`, each file bounded as a rule file, all of them by this.
MAX_KIT_BYTES = 1024 * 1024


def load(directory: Path | str) -> RuleBook:
    """The RuleBook of a rules directory (RulesError naming file, rule and problem)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RulesError(f"{directory}: not a directory of rule files")
    return load_files(read_yaml_files(directory, MAX_FILE_BYTES, MAX_DIRECTORY_BYTES), directory)


def load_files(files: Mapping[str, bytes], directory: Path = Path("<memory>")) -> RuleBook:
    """Build a RuleBook from file contents (a directory read, or files kept by rules version)."""
    for required in (PRODUCTS_FILE, TIME_FILE):
        if required not in files:
            raise RulesError(f"{directory}/{required}: missing")
    total = 0
    for name, data in files.items():
        total += len(data)
        _check_size(name, len(data), total)
    documents = {name: parse_yaml(name, data) for name, data in files.items()}
    for name, document in documents.items():
        _check_numbers(name, document)
    return rulebook.build(_OnRead(documents, _validate_file), files, directory, LIMITS)


def kit_files(rules_dir: Path | str) -> dict[str, bytes]:
    """The kit's files of a rules directory (`<dir>/tests/*.yaml`); none is an empty kit.
    Read with the rule files' bounds per file and MAX_KIT_BYTES in all (KitError past them)."""
    directory = Path(rules_dir) / KIT_DIR
    if not directory.is_dir():
        return {}
    return read_yaml_files(directory, MAX_FILE_BYTES, MAX_KIT_BYTES, KitError, label=f"{KIT_DIR}/")


def parse_kit(files: Mapping[str, bytes]) -> Kit:
    """Read a kit from its files (name -> bytes); an empty mapping is an empty kit."""
    # alias expansion bounded as for rule files
    return policy_kit.build_kit(_OnRead(files, lambda name, data: parse_yaml(name, data, KitError)))


class _OnRead(Mapping[str, Any]):
    """Files (name -> content) whose documents are made when first read (`make(name, content)`,
    kept): the builders read them in the order the loaders always checked them, so a directory
    with several bad files is refused, as before, for the first problem found in that order."""

    def __init__(self, contents: Mapping[str, Any], make: Callable[[str, Any], Any]):
        self._contents, self._make, self._made = contents, make, {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._made:
            self._made[name] = self._make(name, self._contents[name])
        return self._made[name]

    def __contains__(self, name: object) -> bool:
        return name in self._contents

    def __iter__(self) -> Iterator[str]:
        return iter(self._contents)

    def __len__(self) -> int:
        return len(self._contents)


def read_yaml_files(directory: Path, max_file: int, max_total: int,
                    error: type[RulesError] = RulesError, label: str = "") -> dict[str, bytes]:
    """Every `*.yaml` of a directory (name -> bytes), each read with a byte bound.

    The bound is on what is read, not on what `stat` says: a symlink to /dev/zero has size 0,
    and a mounted file may change between a stat and a read. `label` prefixes the file names
    in errors (the kit's files are `tests/<name>`)."""
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(directory.glob("*.yaml")):
        data = read_bounded(path, max_file, error, label + path.name)
        total += len(data)
        if total > max_total:
            raise error(f"{label}{path.name}: the files add up to more than {max_total} bytes")
        files[path.name] = data
    return files


def read_bounded(path: Path, limit: int, error: type[RulesError], name: str) -> bytes:
    """A regular file's bytes, at most `limit` of them (else `error`).

    Symlinks are followed (a Kubernetes ConfigMap mount is symlinks to regular files); what
    the open file turns out to be decides: a FIFO, a device or a directory is refused.
    O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise error(f"{name}: cannot be opened: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{name}: not a regular file (a FIFO, device or directory is refused)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise error(f"{name}: cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{name}: more than {limit} bytes; a file here may hold at most {limit}")
    return data


def _check_size(name: str, size: int, total: int) -> None:
    """Refuse files too big to take (an archived version is checked as the directory was)."""
    if size > MAX_FILE_BYTES:
        raise RulesError(f"{name}: {size} bytes; a rules file may hold at most {MAX_FILE_BYTES}")
    if total > MAX_DIRECTORY_BYTES:
        raise RulesError(f"{name}: the rule files add up to more than {MAX_DIRECTORY_BYTES} bytes")


def _check_numbers(name: str, node: Any, path: str = "") -> None:
    """Walk a parsed file and refuse the first number durable_rules cannot take."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_numbers(name, value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            label = f"{path}[{index}]"
            if isinstance(value, dict) and "id" in value and "check" in value:
                label = f"{path}[{index}] (rule {value['id']}.{value['check']})"
            _check_numbers(name, value, label)
    else:
        problem = number_problem(node)
        if problem:
            raise RulesError(f"{name}: {path}: {node!r} {problem}")


# libyaml's parser with the same safe constructor: the same documents, ~10x faster (a reload,
# an archived version and each mutant of `loan-decide test --mutate` parse every file).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(name: str, data: bytes, error: type[RulesError] = RulesError) -> Any:
    """One YAML document (rule file, kit file, archived version), refused when its aliases
    expand past MAX_YAML_NODES.

    PyYAML builds an alias as a second reference to one object, so parsing an alias bomb is
    quick; every walk of the result afterwards (number checks, validation) visits each
    reference again, and nine levels of nine aliases are 9**9 visits. The node graph is
    composed first and its expanded size counted before anything is built from it."""
    loader = _SAFE_LOADER(data)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_nodes(node, MAX_YAML_NODES)
        if math.isinf(size):
            raise error(f"{name}: an alias contains itself (its expansion never ends)")
        if size > MAX_YAML_NODES:
            raise error(f"{name}: its aliases expand to more than {MAX_YAML_NODES} YAML nodes; "
                        f"a file may expand to at most {MAX_YAML_NODES}")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise error(f"{name}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _expanded_nodes(root: yaml.Node, limit: int) -> float:
    """The node count of the document with every alias written out, memoised per node (an
    alias is the node it names, so the count is linear in the document); it stops at the first
    node past `limit`, and a node inside itself (`&a [*a]`) counts as infinite."""
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            ancestors.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limit:
                return sizes[key]
        elif key in ancestors:
            return math.inf
        elif key not in sizes:
            ancestors.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _validate_file(name: str, document: Any) -> dict:
    """A rule file's document as its schema loads it (the schema chosen by the file's name)."""
    schemas = {PRODUCTS_FILE: ProductsFileSchema, TIME_FILE: TimeFileSchema,
               LIMITS_FILE: LimitsFileSchema, RECOURSE_FILE: RecourseFileSchema,
               EXPLANATIONS_FILE: ExplanationsFileSchema}
    return _validate(name, schemas.get(name, RuleFileSchema)(), document)


def _validate(name: str, schema, document: Any) -> dict:
    if not isinstance(document, dict):
        raise RulesError(f"{name}: expected a mapping at the top level")
    try:
        return schema.load(document)
    except ValidationError as exc:
        raise RulesError(f"{name}: {_describe(document, exc.messages)}") from exc


def _describe(document: Any, messages: Any, path: str = "") -> str:
    """Flatten marshmallow's nested messages, naming rules by id.check where possible."""
    parts = []
    for key, value in messages.items():
        label = f"{path}.{key}" if path else str(key)
        if path.endswith("rules") and isinstance(key, int):
            try:
                raw = document["rules"][key]
                label = f"rule {raw.get('id')}.{raw.get('check')}"
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        if isinstance(value, dict):
            parts.append(_describe(document, value, label))
        else:
            parts.append(f"{label}: {' '.join(map(str, value))}")
    return "; ".join(parts)

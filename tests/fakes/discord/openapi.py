"""Validation of request bodies against Discord's OpenAPI description, and path-template matching.

The spec is loaded once per process (``load_spec`` is cached) and a validator is built lazily per
operation. One normalisation is applied to the spec, because Discord accepts more than it describes:

* ``SnowflakeType`` is ``{"type": "string", "pattern": "^(0|[1-9][0-9]*)$"}``; Discord also accepts
  snowflakes as JSON integers, and discord.py sends some that way (``allowed_mentions.users`` /
  ``roles``, the ``id`` of a new upload in ``attachments``). The schema is widened to
  ``type: [string, integer]`` with ``minimum: 0``; strings must still match the pattern.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, relevance
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

log = logging.getLogger(__name__)

DEFAULT_SPEC_PATH = Path(__file__).resolve().parents[3] / ".." / "shared" / "discord-api-spec" / "openapi.json"
_SPEC_URI = "urn:discord-api-spec"
CHECKED_BODIES = 256  # validation results kept, by body
_METHODS = ("get", "put", "post", "patch", "delete")


def split_path(path: str) -> list[str]:
    """``/a/b%40c/`` -> ``["a", "b@c"]``."""
    return [unquote(s) for s in path.strip("/").split("/") if s]


class RouteMatcher:
    """Matches concrete paths to templates like ``/channels/{channel_id}/messages``.

    Literal segments win over parameters (``messages/@original`` beats ``messages/{message_id}``).
    """

    def __init__(self, templates: Iterable[str] = ()) -> None:
        self._by_length: dict[int, list[tuple[str, list[str]]]] = {}
        for template in templates:
            self.add(template)

    def add(self, template: str) -> None:
        segments = split_path(template)
        bucket = self._by_length.setdefault(len(segments), [])
        if all(t != template for t, _ in bucket):
            bucket.append((template, segments))

    def match(self, path: str | list[str]) -> tuple[str, dict[str, str]] | None:
        """The best template for ``path`` and the parameters it binds, or None."""
        segments = split_path(path) if isinstance(path, str) else path
        best: tuple[int, str, dict[str, str]] | None = None
        for template, parts in self._by_length.get(len(segments), ()):
            params: dict[str, str] = {}
            literals = 0
            for want, got in zip(parts, segments, strict=True):
                if want.startswith("{") and want.endswith("}"):
                    params[want[1:-1]] = got
                elif want == got:
                    literals += 1
                else:
                    break
            else:
                if best is None or literals > best[0]:
                    best = (literals, template, params)
        return None if best is None else (best[1], best[2])


def _normalise(document: dict[str, Any]) -> None:
    """Widen the spec where Discord accepts more than it describes (see the module docstring)."""
    snowflake = document["components"]["schemas"]["SnowflakeType"]
    snowflake["type"] = ["string", "integer"]
    snowflake["minimum"] = 0


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class OpenApiSpec:
    """Discord's OpenAPI document: which operations exist and what their request bodies must be."""

    def __init__(self, document: dict[str, Any]) -> None:
        _normalise(document)
        self.document = document
        self.registry: Registry = Registry().with_resource(
            _SPEC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self.paths: dict[str, dict[str, Any]] = document["paths"]
        self.matcher = RouteMatcher(self.paths)
        self._validators: dict[tuple[str, str], Draft202012Validator | None] = {}
        # Bodies already checked: every test's bot registers the same commands, a body that takes long to check.
        self._checked: OrderedDict[tuple[str, str, str], list[str]] = OrderedDict()

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        item = self.paths.get(template)
        return None if item is None else item.get(method.lower())

    def match(self, method: str, path: str | list[str]) -> str | None:
        """The spec's template for a concrete path, if it has that operation."""
        found = self.matcher.match(path)
        if found is None or self.operation(method, found[0]) is None:
            return None
        return found[0]

    def _validator(self, method: str, template: str) -> Draft202012Validator | None:
        key = (method.lower(), template)
        if key not in self._validators:
            validator = None
            operation = self.operation(method, template)
            content = (operation or {}).get("requestBody", {}).get("content", {})
            for media in ("application/json", "multipart/form-data"):
                if media in content:
                    ref = _pointer("paths", template, key[0], "requestBody", "content", media, "schema")
                    schema = {"$ref": f"{_SPEC_URI}#/{ref}"}
                    validator = Draft202012Validator(schema, registry=self.registry)
                    break
            self._validators[key] = validator
        return self._validators[key]

    def has_request_body(self, method: str, template: str) -> bool:
        return self._validator(method, template) is not None

    def schema_errors(self, name: str, instance: Any) -> list[str]:
        """Errors of ``instance`` against ``#/components/schemas/<name>`` (used to check the fake itself)."""
        key = ("schema", name)
        if key not in self._validators:
            ref = {"$ref": f"{_SPEC_URI}#/components/schemas/{name}"}
            self._validators[key] = Draft202012Validator(ref, registry=self.registry)
        validator = self._validators[key]
        assert validator is not None
        return [_describe(e) for e in validator.iter_errors(instance)]

    def validate(self, method: str, template: str, body: Any) -> list[str]:
        """Readable errors for ``body`` (the JSON body or the multipart ``payload_json``); [] if valid."""
        validator = self._validator(method, template)
        if validator is None:
            return []
        key = (method.lower(), template, json.dumps(body, sort_keys=True))
        if key in self._checked:
            self._checked.move_to_end(key)
            return list(self._checked[key])
        problems = [_describe(e) for e in validator.iter_errors(body)]
        self._checked[key] = problems
        if len(self._checked) > CHECKED_BODIES:
            self._checked.popitem(last=False)
        return list(problems)


def _where(error: ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "(body)"


def _branch_errors(error: ValidationError) -> list[ValidationError] | None:
    """For an anyOf/oneOf failure, the errors of the branch the body most plausibly meant.

    Discord's unions are discriminated by a ``type`` field: branches whose ``type`` does not match are
    dropped, and the branch with the fewest errors is kept.
    """
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    plausible = [
        errs
        for errs in branches.values()
        if not any(list(e.relative_path) == ["type"] or (e.validator == "type" and not e.relative_path) for e in errs)
    ]
    if not plausible:
        return None
    return min(plausible, key=len)


def _describe(error: ValidationError) -> str:
    while error.validator in ("anyOf", "oneOf") and error.context:
        errs = _branch_errors(error)
        if not errs:
            break
        error = max(errs, key=relevance)
    message = error.message
    if len(message) > 200:
        value = error.instance
        size = f" (length {len(value)})" if isinstance(value, str | list | dict) else ""
        message = f"value{size} fails {error.validator}={error.validator_value!r}"
    return f"{_where(error)}: {message}"


@functools.lru_cache(maxsize=4)
def load_spec(path: str | Path = DEFAULT_SPEC_PATH) -> OpenApiSpec:
    """Load (once per process and path) Discord's OpenAPI description."""
    resolved = Path(path).resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"Discord's OpenAPI description is not at {resolved} (pass spec_path=)")
    log.debug("loading Discord OpenAPI description from %s", resolved)
    with resolved.open(encoding="utf-8") as fh:
        return OpenApiSpec(json.load(fh))

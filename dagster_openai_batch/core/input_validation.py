"""The Batch API's rules for an input, checked line by line before anything is uploaded.

:class:`InputChecker` checks each request in turn (fields, url, body, unique custom_ids, one model,
the embedding-input and size limits) and collects every :class:`InputProblem`;
:meth:`InputChecker.finish` raises them together in one :class:`BatchInputError`.

>>> checker = InputChecker("/v1/embeddings", max_bytes=1_000, max_inputs=10)
>>> def request(cid, text):
...     body = {"model": "m", "input": text}
...     return {"custom_id": cid, "url": "/v1/embeddings", "body": body}
>>> checker.check(1, request("a", "x"))
CheckedLine(custom_id='a', line=b'{"custom_id":"a",...}\\n', inputs=1)
>>> checker.check(2, request("a", "y"))
>>> print(checker.problems[0])
line 2 (custom_id 'a'), field 'custom_id': custom_id 'a' is already used on line 1. Give every ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson
from pydantic import BaseModel

from .batch_request import BatchRequest
from .errors import OpenAIBatchError
from .model_catalogue import (
    known_models,
    log_once,
    model_endpoint_problem,
    unknown_model_warning,
)
from .strict_schema import strict_schema_problems
from .vocabulary import (
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_PAIRS,
    MAX_METADATA_VALUE_CHARS,
    MODEL_REQUIRED_ENDPOINTS,
    BatchEndpoint,
)

SHOWN_PROBLEMS = 20
"""Problems listed in the message of a :class:`BatchInputError`."""
KEPT_PROBLEMS = 1_000
"""Problems kept in :attr:`BatchInputError.problems` (all are counted)."""
RULED_BODY_FIELDS = frozenset(("metadata", "response_format", "text"))
"""Body fields with rules of their own, besides ``model`` and ``stream``."""
_WINDOW = 65_536
"""custom_ids kept as strings at least (see :class:`_SeenIds`)."""


class InputProblem(BaseModel):
    """One thing wrong with one input line."""

    line: int
    custom_id: str | None = None
    field: str | None = None
    code: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (
            f" (custom_id {self.custom_id!r})" if self.custom_id is not None else ""
        )
        field = f", field {self.field!r}" if self.field else ""
        return f"{where}{field}: {self.message}. {self.fix}"


class BatchInputError(OpenAIBatchError, ValueError):
    """The input breaks the Batch API's rules; ``problems`` lists each one (the first
    :data:`KEPT_PROBLEMS`)."""

    def __init__(self, problems: list[InputProblem], total: int | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        shown = "\n".join(f"  - {p}" for p in problems[:SHOWN_PROBLEMS])
        rest = self.total - min(len(problems), SHOWN_PROBLEMS)
        more = f"\n  … and {rest} more problem(s)" if rest > 0 else ""
        super().__init__(
            f"batch input is invalid ({self.total} problem(s)); nothing was "
            f"uploaded:\n{shown}{more}"
        )


def count_embedding_inputs(body: dict[str, Any]) -> int:
    """Inputs in an embeddings body: a string or a token array counts 1, a list of them counts each.

    >>> count_embedding_inputs({"input": ["a", "b"]}), count_embedding_inputs({"input": [1, 2, 3]})
    (2, 1)
    """
    value = body.get("input")
    if isinstance(value, list) and value and isinstance(value[0], (str, list)):
        return len(value)
    return 1 if value is not None else 0


def _problem(
    lineno: int, cid: Any, field: str | None, code: str, message: str, fix: str
) -> InputProblem:
    return InputProblem(
        line=lineno,
        custom_id=cid if isinstance(cid, str) else None,
        field=field,
        code=code,
        message=message,
        fix=fix,
    )


def check_line(lineno: int, req: dict[str, Any], endpoint: str) -> list[InputProblem]:
    """The rules one line must follow on its own: required fields, method, url, body shape, no
    streaming."""
    cid = req.get("custom_id")
    body = req.get("body")
    if _is_usual(req, cid, body, endpoint):
        return []
    return [
        *_missing_fields(lineno, req),
        *_custom_id_type(lineno, cid),
        *_method_and_url(lineno, req, endpoint),
        *_body_shape(lineno, cid, body),
    ]


def _is_usual(req: dict[str, Any], cid: Any, body: Any, endpoint: str) -> bool:
    """Whether a line (``cid`` and ``body`` its fields) is the usual one, which passes every rule of
    :func:`check_line` (decided without building lists)."""
    return (
        isinstance(cid, str)
        and cid != ""
        and req.get("url") == endpoint
        and req.get("method", "POST") == "POST"
        and isinstance(body, dict)
        and not body.get("stream")
    )


def _missing_fields(lineno: int, req: dict[str, Any]) -> list[InputProblem]:
    return [
        _problem(
            lineno,
            req.get("custom_id"),
            field,
            "missing_required_parameter",
            f"`{field}` is missing",
            f"Give every line a `{field}`",
        )
        for field in ("custom_id", "url", "body")
        if req.get(field) in (None, "")
    ]


def _custom_id_type(lineno: int, cid: Any) -> list[InputProblem]:
    if cid is None or isinstance(cid, str):
        return []
    return [
        _problem(
            lineno,
            None,
            "custom_id",
            "invalid_request",
            f"custom_id must be a string, got {type(cid).__name__} {cid!r}",
            "Convert custom_id to a string",
        )
    ]


def _method_and_url(lineno: int, req: dict[str, Any], endpoint: str) -> list[InputProblem]:
    cid = req.get("custom_id")
    problems = []
    if req.get("method", "POST") != "POST":
        problems.append(
            _problem(
                lineno,
                cid,
                "method",
                "invalid_request",
                f"method is {req.get('method')!r}",
                'Use "method": "POST"',
            )
        )
    url = req.get("url")
    if url not in (None, "") and url != endpoint:
        problems.append(
            _problem(
                lineno,
                cid,
                "url",
                "invalid_url",
                f"url {url!r} differs from the batch endpoint {endpoint!r}",
                "Send every line of a batch to the same endpoint",
            )
        )
    return problems


def _body_shape(lineno: int, cid: Any, body: Any) -> list[InputProblem]:
    if body not in (None, "") and not isinstance(body, dict):
        return [
            _problem(
                lineno,
                cid,
                "body",
                "invalid_request",
                f"body must be a JSON object, got {type(body).__name__}",
                "Put the request parameters in an object",
            )
        ]
    if isinstance(body, dict) and body.get("stream"):
        return [
            _problem(
                lineno,
                cid,
                "body.stream",
                "streaming_unsupported",
                "streaming is not supported in a batch",
                "Remove `stream` from the body",
            )
        ]
    return []


def _metadata(lineno: int, cid: Any, body: dict[str, Any]) -> list[InputProblem]:
    """The limits of a body's ``metadata``: 16 pairs, keys ≤ 64 characters, string values ≤ 512."""
    metadata = body.get("metadata")
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return [
            _problem(
                lineno,
                cid,
                "body.metadata",
                "invalid_type",
                f"metadata must be an object of strings, got {type(metadata).__name__}",
                "Give `metadata` as string keys and string values",
            )
        ]
    found = []
    if len(metadata) > MAX_METADATA_PAIRS:
        found.append(
            (
                "body.metadata",
                f"{len(metadata)} metadata pairs (at most {MAX_METADATA_PAIRS})",
                f"Keep at most {MAX_METADATA_PAIRS} pairs",
            )
        )
    for raw_key, value in metadata.items():
        key = str(raw_key)
        if len(key) > MAX_METADATA_KEY_CHARS:
            found.append(
                (
                    "body.metadata",
                    f"metadata key {key[:20]!r}… is {len(key)} characters "
                    f"(at most {MAX_METADATA_KEY_CHARS})",
                    "Shorten the key",
                )
            )
        if not isinstance(value, str):
            found.append(
                (
                    f"body.metadata.{key}",
                    f"metadata value is a {type(value).__name__}; values must be strings",
                    "Convert the value to a string",
                )
            )
        elif len(value) > MAX_METADATA_VALUE_CHARS:
            found.append(
                (
                    f"body.metadata.{key}",
                    f"metadata value is {len(value)} characters (at most "
                    f"{MAX_METADATA_VALUE_CHARS})",
                    "Shorten the value or keep it elsewhere (e.g. a column of the rows)",
                )
            )
    return [_problem(lineno, cid, field, "invalid_metadata", m, fix) for field, m, fix in found]


def _strict_schema(body: dict[str, Any]) -> tuple[str, Any] | None:
    """The field and schema of a body's strict structured output (chat or responses), if any."""
    chat = body.get("response_format")
    if isinstance(chat, dict) and chat.get("type") == "json_schema":
        spec = chat.get("json_schema")
        if isinstance(spec, dict) and spec.get("strict"):
            return "body.response_format.json_schema.schema", spec.get("schema")
    text = body.get("text")
    spec = text.get("format") if isinstance(text, dict) else None
    if isinstance(spec, dict) and spec.get("type") == "json_schema" and spec.get("strict"):
        return "body.text.format.schema", spec.get("schema")
    return None


def _repeated(lineno: int, cid: str, first: int) -> InputProblem:
    return _problem(
        lineno,
        cid,
        "custom_id",
        "duplicate_custom_id",
        f"custom_id {cid!r} is already used on line {first}",
        "Give every request a unique custom_id",
    )


class _SeenIds:
    """The custom_ids used so far, each with the line it was first used on, in little memory.

    The latest ids are kept as they are in :attr:`recent` (a repeat among them is found at once);
    :meth:`archive`, called when :attr:`window` ids are recent and at the end, moves them to sorted
    arrays of 64-bit hashes and lines (16 bytes an id, so memory stays flat however long the
    input) and gives those that repeat an archived id.
    """

    def __init__(self) -> None:
        self.recent: dict[str, int] = {}
        self.window = _WINDOW
        self._hashes = np.empty(0, np.int64)
        self._lines = np.empty(0, np.int64)

    def archive(self) -> list[tuple[int, str, int]]:
        """Archive the recent ids; each that repeats an archived one as (line, id, first line)."""
        recent, count = self.recent, len(self.recent)
        if not count:
            return []
        hashes = np.fromiter(map(hash, recent), np.int64, count)
        lines = np.fromiter(recent.values(), np.int64, count)
        order = np.argsort(hashes)
        hashes, lines = hashes[order], lines[order]
        at = np.searchsorted(self._hashes, hashes)
        repeat = at < len(self._hashes)
        repeat[repeat] = self._hashes[at[repeat]] == hashes[repeat]
        repeats = []
        if repeat.any():
            ids = list(recent)
            for i in np.flatnonzero(repeat):
                repeats.append((int(lines[i]), ids[order[i]], int(self._lines[at[i]])))
            hashes, lines = hashes[~repeat], lines[~repeat]
        recent.clear()
        merged = np.concatenate([self._hashes, hashes])
        by_hash = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
        self._hashes = merged[by_hash]
        self._lines = np.concatenate([self._lines, lines])[by_hash]
        self.window = max(_WINDOW, len(self._hashes) // 8)
        return repeats


class CheckedLine(NamedTuple):
    """A request that passed every check: its custom_id, its JSONL line and its embedding inputs."""

    custom_id: str
    line: bytes
    inputs: int


class InputChecker:
    """Checks the requests of one batch input in order, keeping what the rules between lines need
    (custom_ids seen, the batch's model) and every problem found.

    Past the latest ones, only a hash of each custom_id is kept (see :class:`_SeenIds`), so memory
    stays small however long the input; a repeat of an old id is reported a little later (at the
    latest by :meth:`finish`), and :meth:`finish` lists the problems in line order.
    """

    def __init__(
        self,
        endpoint: BatchEndpoint,
        *,
        max_bytes: int,
        max_inputs: int,
        model_names_known: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.max_bytes, self.max_inputs = max_bytes, max_inputs
        self.model_names_known = model_names_known
        """Whether an unknown model name is warned about (not on Azure: deployment names)."""
        self._schemas: dict[int, tuple[Any, list[str]]] = {}  # id(schema) -> (schema, problems)
        self.model: str | None = None
        """The batch's model: the first line's (every other line must use the same)."""
        self.requests = 0
        """Requests that passed every check."""
        self.problems: list[InputProblem] = []
        """The first :data:`KEPT_PROBLEMS` problems."""
        self.warnings: list[str] = []
        """What may go wrong but is not refused (a model the library does not know)."""
        self.total_problems = 0
        self._model_line = 0
        self._seen = _SeenIds()
        self._recent = self._seen.recent
        self.shape_inputs = 0
        """The embedding inputs of the last line that passed :meth:`check`."""

    def report(self, problems: list[InputProblem]) -> None:
        """Count ``problems`` and keep them (up to :data:`KEPT_PROBLEMS` in all)."""
        self.total_problems += len(problems)
        self.problems.extend(problems[: max(0, KEPT_PROBLEMS - len(self.problems))])

    def check(
        self, lineno: int, item: BatchRequest | dict[str, Any] | InputProblem
    ) -> CheckedLine | None:
        """``item`` as the line to write, or None when it has problems (they are reported)."""
        if isinstance(item, InputProblem):
            self.report([item])
            return None
        req = _as_dict(item)
        cid: Any = req.get("custom_id")
        body: Any = req.get("body")
        if (  # the usual line, once one has passed: its model is known good, no field to rule on
            self.requests
            and _is_usual(req, cid, body, self.endpoint)
            and body.get("model") == self.model
            and RULED_BODY_FIELDS.isdisjoint(body)
        ):
            inputs = count_embedding_inputs(body) if self.endpoint == "/v1/embeddings" else 0
            line = orjson.dumps(
                {"custom_id": cid, "method": "POST", "url": req["url"], "body": body}
            )
            line += b"\n"
            if (
                self._recent.setdefault(cid, lineno) == lineno
                and len(line) <= self.max_bytes
                and inputs <= self.max_inputs
            ):
                self.requests += 1
                if len(self._recent) >= self._seen.window:
                    self._archive_ids()
                return CheckedLine(cid, line, inputs)
        found = check_line(lineno, req, self.endpoint)
        found += self._check_unique(lineno, cid)
        inputs = 0
        if isinstance(body, dict):
            found += self._check_model(lineno, cid, body)
            if "metadata" in body:
                found += _metadata(lineno, cid, body)
            if "response_format" in body or "text" in body:
                found += self._check_schema(lineno, cid, body)
            if self.endpoint == "/v1/embeddings":
                inputs = count_embedding_inputs(body)
                found += self._check_inputs(lineno, cid, inputs)
        line = (
            orjson.dumps({"custom_id": cid, "method": "POST", "url": req.get("url"), "body": body})
            + b"\n"
        )
        found += self._check_size(lineno, cid, line)
        if found:
            self.report(found)
            return None
        self.requests += 1
        self.shape_inputs = inputs
        return CheckedLine(str(cid), line, inputs)  # a non-empty str: checked above

    def check_rendered(self, lineno: int, custom_id: str, line: bytes) -> bool:
        """Whether ``line`` (a JSONL line with its newline) passes, the problems reported if not.

        The line comes from a compiled template whose lines differ only in their custom_id and in
        strings no rule reads but for their size (see :attr:`~.templates.LineRenderer.same_shape`):
        once one of them has passed every check, the others need only the checks of what varies (a
        unique custom_id, the line's size); their embedding inputs are :attr:`shape_inputs`.
        """
        if not self.requests:
            return self.check(lineno, orjson.loads(line)) is not None
        recent = self._recent
        if recent.setdefault(custom_id, lineno) == lineno and len(line) <= self.max_bytes:
            self.requests += 1
            if len(recent) >= self._seen.window:
                self._archive_ids()
            return True
        self.report(
            self._check_unique(lineno, custom_id) + self._check_size(lineno, custom_id, line)
        )
        return False

    def check_rendered_many(self, lineno: int, ids: Sequence[str], lines: list[bytes]) -> bool:
        """Whether every line of ``lines`` (their ids ``ids``, the first on line ``lineno``)
        passes :meth:`check_rendered`'s checks: then all are recorded, else none is (check them
        one by one to report their problems)."""
        recent = self._recent
        if (
            not self.requests
            or max(map(len, lines)) > self.max_bytes
            or not recent.keys().isdisjoint(ids)
            or len(set(ids)) != len(ids)
        ):
            return False
        recent.update(zip(ids, range(lineno, lineno + len(ids)), strict=True))
        self.requests += len(ids)
        if len(recent) >= self._seen.window:
            self._archive_ids()
        return True

    def finish(self) -> None:
        """Raise a :class:`BatchInputError` listing every problem, if any (an input without any
        request is one)."""
        if self.requests == 0 and self.total_problems == 0:
            self.report(
                [
                    InputProblem(
                        line=0,
                        code="empty_file",
                        message="the input has no requests",
                        fix="Give at least one row or request",
                    )
                ]
            )
        self._archive_ids()
        if self.total_problems:
            self.problems.sort(key=lambda p: p.line)  # repeats of archived ids come late
            raise BatchInputError(self.problems, self.total_problems)

    def _check_unique(self, lineno: int, cid: Any) -> list[InputProblem]:
        if not (isinstance(cid, str) and cid):
            return []
        first = self._recent.setdefault(cid, lineno)
        if first != lineno:
            return [_repeated(lineno, cid, first)]
        if len(self._recent) >= self._seen.window:
            self._archive_ids()
        return []

    def _archive_ids(self) -> None:
        self.report([_repeated(*repeat) for repeat in self._seen.archive()])

    def _check_model(self, lineno: int, cid: Any, body: dict[str, Any]) -> list[InputProblem]:
        model = body.get("model")
        if model in (None, "") and self.endpoint in MODEL_REQUIRED_ENDPOINTS:
            return [
                _problem(
                    lineno,
                    cid,
                    "body.model",
                    "missing_required_parameter",
                    f"`body.model` is missing ({self.endpoint} needs a model)",
                    "Give every request a `model` (the same one on every line)",
                )
            ]
        if self._model_line == 0:
            self.model, self._model_line = model, lineno
            return self._check_model_name(lineno, cid, model)
        if model != self.model:
            return [
                _problem(
                    lineno,
                    cid,
                    "body.model",
                    "model_mismatch",
                    f"model {model!r} differs from {self.model!r} (line {self._model_line})",
                    "Use one model per batch; split the input by model",
                )
            ]
        return []

    def _check_model_name(self, lineno: int, cid: Any, model: Any) -> list[InputProblem]:
        """Refuse a known model the endpoint does not serve; warn about an unknown one."""
        if not isinstance(model, str) or not model:
            return []
        problem = model_endpoint_problem(self.endpoint, model)
        if problem is not None:
            return [
                _problem(
                    lineno,
                    cid,
                    "body.model",
                    "model_not_supported",
                    problem,
                    f"Use a model {self.endpoint} serves: "
                    + ", ".join(known_models(self.endpoint)),
                )
            ]
        warning = unknown_model_warning(self.endpoint, model) if self.model_names_known else None
        if warning is not None:
            self.warnings.append(warning)
            log_once(warning)
        return []

    def _check_schema(self, lineno: int, cid: Any, body: dict[str, Any]) -> list[InputProblem]:
        found = _strict_schema(body)
        if found is None:
            return []
        field, schema = found
        # A template's lines share one schema object: it is checked once (and kept, so that its
        # id is not reused by another).
        seen = self._schemas.get(id(schema))
        if seen is None:
            seen = schema, strict_schema_problems(schema)
            if len(self._schemas) < 64:
                self._schemas[id(schema)] = seen
        return [
            _problem(
                lineno,
                cid,
                field,
                "unsupported_schema",
                f"strict structured outputs cannot take this schema: {problem}",
                "Fix the schema (or its response_model), or send it with strict: false",
            )
            for problem in seen[1]
        ]

    def _check_inputs(self, lineno: int, cid: Any, inputs: int) -> list[InputProblem]:
        if inputs <= self.max_inputs:
            return []
        return [
            _problem(
                lineno,
                cid,
                "body.input",
                "too_many_inputs",
                f"{inputs} embedding inputs in one request; the limit is {self.max_inputs}",
                "Split this request into smaller ones",
            )
        ]

    def _check_size(self, lineno: int, cid: Any, line: bytes) -> list[InputProblem]:
        if len(line) <= self.max_bytes:
            return []
        return [
            _problem(
                lineno,
                cid,
                None,
                "line_too_large",
                f"the request is {len(line):,} bytes; a file holds at most {self.max_bytes:,}",
                "Shorten this request",
            )
        ]


def _as_dict(item: BatchRequest | dict[str, Any]) -> dict[str, Any]:
    if isinstance(item, BatchRequest):
        return {
            "custom_id": item.custom_id,
            "method": item.method,
            "url": item.url,
            "body": item.body,
        }
    return item

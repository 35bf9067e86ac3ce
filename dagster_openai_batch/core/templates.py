"""Rows into batch requests: :class:`RequestTemplate` and the functions that apply it.

>>> t = RequestTemplate(
...     endpoint="/v1/chat/completions",
...     model="gpt-4o-mini",
...     prompt="Summarise: {text}",
...     custom_id_column="id",
... )
>>> [r.body["messages"][0]["content"] for r in build_requests([{"id": 1, "text": "hello"}], t)]
['Summarise: hello']
"""

from __future__ import annotations

import hashlib
import math
import string
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
from openai import pydantic_function_tool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .batch_request import BatchRequest
from .errors import OpenAIBatchError
from .input_validation import RULED_BODY_FIELDS
from .strict_schema import strict_schema_problems
from .vocabulary import ValidEndpoint

ROW_BATCH_SIZE = 8_192
"""Rows converted to Python dicts at a time when reading a DataFrame or Arrow table."""

_FORMATTER = string.Formatter()
_CONVERSATION_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
"""The endpoints that take ``messages`` and a ``response_model``."""


def iter_rows(source: Any) -> Iterator[dict[str, Any]]:
    """Yield rows as dicts from an iterable of mappings, a pandas/polars DataFrame or an Arrow
    table/reader.

    Tables are read a record batch at a time, so a large table is never copied into one big list.

    >>> import pyarrow as pa
    >>> list(iter_rows(pa.table({"a": [1, 2]})))
    [{'a': 1}, {'a': 2}]
    """
    import pyarrow as pa

    if isinstance(source, pa.Table):
        for batch in source.to_batches(max_chunksize=ROW_BATCH_SIZE):
            yield from batch.to_pylist()
        return
    if isinstance(source, (pa.RecordBatch, pa.RecordBatchReader)):
        batches = [source] if isinstance(source, pa.RecordBatch) else source
        for batch in batches:
            yield from batch.to_pylist()
        return
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(source, pd.DataFrame):
        for start in range(0, len(source), ROW_BATCH_SIZE):
            yield from _pandas_records(source.iloc[start : start + ROW_BATCH_SIZE])
        return
    pl = sys.modules.get("polars")
    if pl is not None and isinstance(source, pl.LazyFrame):
        source = source.collect()
    if pl is not None and isinstance(source, pl.DataFrame):
        for frame in source.iter_slices(ROW_BATCH_SIZE):
            yield from frame.to_dicts()
        return
    yield from _mappings(source)


def _mappings(source: Any) -> Iterator[dict[str, Any]]:
    """The rows of an iterable of mappings, as dicts."""
    for row in source:
        if type(row) is dict:
            yield row
            continue
        if not isinstance(row, Mapping):
            raise TypeError(f"rows must be mappings (dicts), got {type(row).__name__}: {row!r:.80}")
        yield row if isinstance(row, dict) else dict(row)


def _pandas_records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame chunk as dicts, its missing values (NaN, NaT, pd.NA) as None; only columns with
    gaps are touched."""
    gaps = frame.isna().any()
    if gaps.any():
        frame = frame.copy(deep=False)
        for i in gaps.to_numpy().nonzero()[0]:
            column = frame.iloc[:, i]
            frame.isetitem(i, column.astype(object).where(column.notna(), None))
    records: list[dict[str, Any]] = frame.to_dict("records")
    return records


def is_missing(value: Any) -> bool:
    """Whether ``value`` is a missing value: None, a float NaN, pandas NaT or pd.NA.

    >>> [is_missing(v) for v in (None, float("nan"), 0, "", "nan")]
    [True, True, False, False, False]
    """
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    kind = type(value).__name__
    if kind in ("NAType", "NaTType"):
        return True
    return (
        kind.startswith("float") and hasattr(value, "dtype") and math.isnan(value)
    )  # numpy float16/32


@lru_cache(maxsize=1024)
def _fields(template: str) -> tuple[str, ...]:
    """Root column names of the ``{placeholders}`` in a format string (``{{`` escapes a brace)."""
    names = []
    for _, field, _, _ in _FORMATTER.parse(template):
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root:
            raise ValueError(
                f"template {template!r} has an empty or positional placeholder '{{}}'; name a "
                "column"
            )
        names.append(root)
    return tuple(names)


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v)


class RequestTemplate(BaseModel):
    """How one row becomes the body of one request.

    Give ``messages`` (chat), ``prompt`` (the endpoint's natural input) or ``body_fn``. Strings may
    hold ``{column}`` placeholders, filled from the row with :meth:`str.format` rules (write ``{{``
    for a literal brace).

    >>> t = RequestTemplate(
    ...     endpoint="/v1/embeddings", model="text-embedding-3-small", prompt="{title}: {text}"
    ... )
    >>> t.placeholders()
    ['text', 'title']
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    endpoint: ValidEndpoint
    model: str
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    body: dict[str, Any] = Field(default_factory=dict)
    response_model: type[BaseModel] | None = Field(default=None, exclude=True)
    custom_id_column: str | None = None
    body_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = Field(default=None, exclude=True)
    _format: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> RequestTemplate:
        if self.messages is None and self.prompt is None and self.body_fn is None and not self.body:
            raise ValueError("a RequestTemplate needs `messages`, `prompt`, `body` or `body_fn`")
        if self.messages is not None and self.prompt is not None:
            raise ValueError("give either `messages` or `prompt`, not both")
        for name in ("messages", "response_model"):
            if getattr(self, name) is not None and self.endpoint not in _CONVERSATION_ENDPOINTS:
                raise ValueError(
                    f"`{name}` only applies to chat completions and responses, not {self.endpoint}"
                )
        for s in _walk_strings([self.messages, self.prompt, self.body]):
            _fields(s)  # fail early on malformed templates
        self._format = self.response_format()  # refuses a model strict outputs cannot take
        return self

    def placeholders(self) -> list[str]:
        """Sorted column names used by the template's placeholders."""
        return sorted(
            {f for s in _walk_strings([self.messages, self.prompt, self.body]) for f in _fields(s)}
        )

    def response_format(self) -> dict[str, Any] | None:
        """The structured-output body fields for ``response_model`` (strict JSON schema), or
        None; a ``ValueError`` names each field strict structured outputs cannot take.

        >>> class Loose(BaseModel):
        ...     extra: dict[str, Any]
        >>> RequestTemplate(endpoint="/v1/responses", model="gpt-4o", prompt="{q}",
        ...                 response_model=Loose)
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for RequestTemplate
          Value error, response_model Loose cannot be used with strict structured outputs ...
        """
        if self.response_model is None:
            return None
        # The SDK's strict JSON schema of the model, as it sends it for a function tool.
        schema = pydantic_function_tool(self.response_model)["function"]["parameters"]
        name = self.response_model.__name__
        problems = strict_schema_problems(schema)
        if problems:
            raise ValueError(
                f"response_model {name} cannot be used with strict structured outputs (the "
                "service would refuse every request): " + "; ".join(problems)
            )
        if self.endpoint == "/v1/responses":
            return {
                "text": {
                    "format": {
                        "type": "json_schema",
                        "name": name,
                        "schema": schema,
                        "strict": True,
                    }
                }
            }
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": True},
            }
        }

    def render_body(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The request body for one row.

        >>> t = RequestTemplate(endpoint="/v1/completions", model="m", prompt="Q: {q}")
        >>> t.render_body({"q": "2+2"})
        {'model': 'm', 'prompt': 'Q: 2+2'}
        """
        body = self._assemble(lambda value: _render(value, row))
        if self.body_fn is not None:
            body.update(self.body_fn(dict(row)))
        return body

    def _assemble(self, render: Callable[[Any], Any]) -> dict[str, Any]:
        """The body without ``body_fn``'s fields, each template value passed through ``render``."""
        body: dict[str, Any] = {"model": self.model}
        body.update(render(self.body))
        if self.prompt is not None:
            text = render(self.prompt)
            if self.endpoint == "/v1/chat/completions":
                body["messages"] = [{"role": "user", "content": text}]
            elif self.endpoint in ("/v1/embeddings", "/v1/moderations", "/v1/responses"):
                body["input"] = text
            else:
                body["prompt"] = text
        if self.messages is not None:
            key = "input" if self.endpoint == "/v1/responses" else "messages"
            body[key] = render(self.messages)
        if self.response_model is not None:
            body.update(self._format or {})
        return body


def _render(value: Any, row: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if not _fields(value):
            return value.replace("{{", "{").replace("}}", "}")
        try:
            return value.format_map(row)
        except KeyError as e:
            name = e.args[0]
            columns = ", ".join(map(str, row)) or "(none)"
            raise KeyError(
                f"placeholder {{{name}}} has no column in the row; available columns: {columns}. "
                f"Rename the column or the placeholder (write {{{{ for a literal brace)."
            ) from None
    if isinstance(value, dict):
        return {k: _render(v, row) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, row) for v in value]
    return value


class _RowIds:
    """Stable ``row-<16 hex>`` ids from a row's content; repeats get ``-2``, ``-3``… in order of
    appearance."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, row: Mapping[str, Any]) -> str:
        data = orjson.dumps(
            row,
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
            default=str,
        )
        base = "row-" + hashlib.blake2b(data, digest_size=8).hexdigest()
        n = self._seen.get(base, 0) + 1
        self._seen[base] = n
        return base if n == 1 else f"{base}-{n}"


class CustomIdError(OpenAIBatchError, ValueError):
    """A row's ``custom_id_column`` value cannot be a custom_id (missing, empty, or a float)."""

    fix = (
        "Give every row an id, a string or an integer (a pandas integer column with missing values "
        "turns "
        "float: fill or drop those rows, or convert the column with .astype('Int64') or "
        ".astype(str))"
    )


def custom_ids(template: RequestTemplate) -> Callable[[Mapping[str, Any]], str]:
    """A function giving each row its custom_id under ``template`` (stateful: call it once per row,
    in order).

    A ``custom_id_column`` value must be a non-empty string or an integer: None, NaN, "" and floats
    (``1.0`` would silently become ``"1.0"``) raise :class:`CustomIdError`.
    """
    column = template.custom_id_column
    if column is None:
        return _RowIds()

    def from_column(row: Mapping[str, Any]) -> str:
        try:
            value = row[column]
        except KeyError:
            raise KeyError(
                f"custom_id_column {column!r} is not a column of the row; available columns: "
                f"{', '.join(map(str, row))}"
            ) from None
        if isinstance(value, str):
            if value:
                return value
        elif not is_missing(value) and not _is_float(
            value
        ):  # int, numpy int, UUID…: not bool or float
            return str(value)
        what = "empty" if value == "" or is_missing(value) else f"a {type(value).__name__}"
        raise CustomIdError(
            f"custom_id_column {column!r} is {what} ({value!r}) in row {dict(row)!r:.200}"
        )

    return from_column


def _is_float(value: Any) -> bool:
    return isinstance(value, (float, bool)) or type(value).__name__.startswith("float")


def build_requests(rows: Any, template: RequestTemplate) -> Iterator[BatchRequest]:
    """Yield one :class:`BatchRequest` per row (rows as accepted by :func:`iter_rows`)."""
    for _, request in build_rows(rows, template):
        yield request


def build_rows(
    rows: Any, template: RequestTemplate
) -> Iterator[tuple[dict[str, Any], BatchRequest]]:
    """Like :func:`build_requests`, also yielding each source row beside its request.

    A row whose id or placeholder value is missing raises :class:`ValueError` (:func:`prepare_rows`
    lists them all).
    """
    for n, (row, request, problems) in enumerate(check_rows(rows, template), 1):
        if problems:
            p = problems[0]
            raise (CustomIdError if p.field == template.custom_id_column else ValueError)(
                f"row {n}: {p.message}. {p.fix}"
            )
        yield row, request  # type: ignore[misc]


class RowProblem(NamedTuple):
    """Why one row cannot become a request."""

    custom_id: str | None
    field: str
    message: str
    fix: str


MISSING_VALUE_FIX = "Fill or drop these rows, or set the column to an empty string"


def row_checker(
    template: RequestTemplate,
) -> Callable[[Mapping[str, Any]], str | list[RowProblem]]:
    """A function giving a row's custom_id, or the problems that keep the row from being a request
    (stateful: call it once per row, in order).

    A row's id must be valid (see :func:`custom_ids`) and no placeholder may be missing (None,
    NaN…): it would be sent, and billed, as the text ``None`` or ``nan``.
    """
    ids = custom_ids(template)
    names = template.placeholders()

    def check(row: Mapping[str, Any]) -> str | list[RowProblem]:
        problems = []
        try:
            cid: str | None = ids(row)
        except CustomIdError as e:
            cid = None
            problems.append(
                RowProblem(
                    None,
                    str(template.custom_id_column),
                    str(e).split(" in row ", 1)[0],
                    CustomIdError.fix,
                )
            )
        for name in names:
            value = row.get(name, "")
            if type(value) is not str and is_missing(value):
                problems.append(
                    RowProblem(
                        cid,
                        name,
                        f"placeholder {{{name}}} has no value ({value!r}); it would be "
                        f"sent as the text {str(value)!r}",
                        MISSING_VALUE_FIX,
                    )
                )
        return problems if cid is None or problems else cid

    return check


def check_rows(
    rows: Any, template: RequestTemplate
) -> Iterator[tuple[dict[str, Any], BatchRequest | None, list[RowProblem]]]:
    """Yield each row with its request, or with the problems that keep it from having one (see
    :func:`row_checker`)."""
    check = row_checker(template)
    url = template.endpoint
    for row in iter_rows(rows):
        cid = check(row)
        if not isinstance(cid, str):
            yield row, None, cid
        else:
            yield (
                row,
                BatchRequest.model_construct(
                    custom_id=cid, method="POST", url=url, body=template.render_body(row)
                ),
                [],
            )


_CHECKED_BODY_FIELDS = ("model", "stream", *sorted(RULED_BODY_FIELDS))
"""Body fields whose values the input rules read (beyond a line's size)."""


class LineRenderer:
    """A template compiled to the bytes of its JSONL line ``{custom_id, method, url, body}``.

    The JSON around the custom_id and the strings that hold placeholders is serialized once; a row
    only fills those strings in, each escaped by ``orjson``. The bytes are those of
    ``orjson.dumps`` of the line built from :meth:`RequestTemplate.render_body`. A template with
    ``body_fn`` cannot be compiled (:meth:`of` gives None).

    >>> t = RequestTemplate(endpoint="/v1/embeddings", model="m", prompt="{text}")
    >>> print(LineRenderer.of(t).line("a", {"text": '"hi"'}).decode(), end="")
    {"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{"model":"m","input":"\\"hi\\""}}
    """

    def __init__(self, template: RequestTemplate) -> None:
        token = uuid.uuid4().hex
        texts: list[str] = []

        def mark(value: Any) -> Any:
            """``value`` with each string that holds a placeholder replaced by a marker."""
            if isinstance(value, str):
                if not _fields(value):
                    return value.replace("{{", "{").replace("}}", "}")
                texts.append(value)
                return f"\x00{token}{len(texts) - 1}\x00"
            if isinstance(value, dict):
                return {k: mark(v) for k, v in value.items()}
            if isinstance(value, list):
                return [mark(v) for v in value]
            return value

        body = template._assemble(mark)
        line = {"custom_id": f"\x00{token}id\x00", "method": "POST", "url": template.endpoint}
        data = orjson.dumps({**line, "body": body}) + b"\n"
        marker = orjson.dumps(f"\x00{token}").rstrip(b'"')
        self.same_shape = not any(
            marker in orjson.dumps(body.get(name)) for name in _CHECKED_BODY_FIELDS
        )
        """Whether every line differs only in its custom_id and in strings no input rule reads
        but for their size (none in the body's model, metadata, stream or structured output)."""
        # The constant pieces between the markers, in the order the markers are serialized: the
        # custom_id's first (the line's first field), then the strings'.
        head, *marked = data.split(marker)
        labels = [piece.partition(b'\\u0000"') for piece in marked]
        assert labels[0][0] == b"id", data
        assert len(labels) == len(texts) + 1, data
        self._head, self._id_tail = head, labels[0][2]
        self._fields: list[tuple[str | None, str, bytes]] = [
            (_whole_column(texts[int(label)]), texts[int(label)], tail)
            for label, _, tail in labels[1:]
        ]

    @classmethod
    def of(cls, template: RequestTemplate) -> LineRenderer | None:
        """The compiled template, or None when it has a ``body_fn``."""
        return None if template.body_fn is not None else cls(template)

    def line(self, custom_id: str, row: Mapping[str, Any]) -> bytes:
        """The JSONL line (with its newline) of the request for ``row``."""
        dumps = orjson.dumps
        parts = [self._head, dumps(custom_id), self._id_tail]
        for column, text, tail in self._fields:
            try:
                if column is None:
                    parts.append(dumps(text.format_map(row)))
                else:
                    value = row[column]
                    parts.append(dumps(value if type(value) is str else format(value, "")))
            except KeyError:
                _render(text, row)  # raises the KeyError that names the missing column
                raise
            parts.append(tail)
        return b"".join(parts)


def _whole_column(text: str) -> str | None:
    """The column a template string is exactly the placeholder of (``"{text}"``), or None."""
    parsed = list(_FORMATTER.parse(text))
    if len(parsed) != 1:
        return None
    literal, field, spec, conversion = parsed[0]
    if literal or not field or spec or conversion or not field.isidentifier():
        return None
    return field

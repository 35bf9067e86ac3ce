"""Turn rows into batch requests with a :class:`RequestTemplate`.

>>> t = RequestTemplate(endpoint="/v1/chat/completions", model="gpt-4o-mini", prompt="Summarise: {text}",
...                     custom_id_column="id")
>>> [r.body["messages"][0]["content"] for r in build_requests([{"id": 1, "text": "hello"}], t)]
['Summarise: hello']
"""

from __future__ import annotations

import hashlib
import string
import sys
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any

import orjson
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .models import BatchEndpoint, BatchRequest

ROW_BATCH_SIZE = 8_192
"""Rows converted to Python dicts at a time when reading a DataFrame or Arrow table."""

_FORMATTER = string.Formatter()


def iter_rows(source: Any) -> Iterator[dict[str, Any]]:
    """Yield rows as dicts from an iterable of mappings, a pandas/polars DataFrame or an Arrow table/reader.

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
            yield from source.iloc[start : start + ROW_BATCH_SIZE].to_dict("records")
        return
    pl = sys.modules.get("polars")
    if pl is not None and isinstance(source, pl.LazyFrame):
        source = source.collect()
    if pl is not None and isinstance(source, pl.DataFrame):
        for frame in source.iter_slices(ROW_BATCH_SIZE):
            yield from frame.to_dicts()
        return
    for row in source:
        if not isinstance(row, Mapping):
            raise TypeError(f"rows must be mappings (dicts), got {type(row).__name__}: {row!r:.80}")
        yield row if isinstance(row, dict) else dict(row)


@lru_cache(maxsize=1024)
def _fields(template: str) -> tuple[str, ...]:
    """Root column names of the ``{placeholders}`` in a format string (``{{`` escapes a brace)."""
    names = []
    for _, field, _, _ in _FORMATTER.parse(template):
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root:
            raise ValueError(f"template {template!r} has an empty or positional placeholder '{{}}'; name a column")
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

    Give ``messages`` (chat), ``prompt`` (the endpoint's natural input) or ``body_fn``. Strings may hold
    ``{column}`` placeholders, filled from the row with :meth:`str.format` rules (write ``{{`` for a literal brace).

    >>> RequestTemplate(endpoint="/v1/embeddings", model="text-embedding-3-small", prompt="{title}: {text}").placeholders()
    ['text', 'title']
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    endpoint: BatchEndpoint
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
        if self.messages is not None and self.endpoint not in (BatchEndpoint.CHAT_COMPLETIONS, BatchEndpoint.RESPONSES):
            raise ValueError(f"`messages` only applies to chat completions and responses, not {self.endpoint.value}")
        if self.response_model is not None and self.endpoint not in (
            BatchEndpoint.CHAT_COMPLETIONS,
            BatchEndpoint.RESPONSES,
        ):
            raise ValueError(f"`response_model` only applies to chat completions and responses, not {self.endpoint.value}")
        for s in _walk_strings([self.messages, self.prompt, self.body]):
            _fields(s)  # fail early on malformed templates
        return self

    def placeholders(self) -> list[str]:
        """Sorted column names used by the template's placeholders."""
        return sorted({f for s in _walk_strings([self.messages, self.prompt, self.body]) for f in _fields(s)})

    def response_format(self) -> dict[str, Any] | None:
        """The structured-output body fields for ``response_model`` (strict JSON schema), or None."""
        if self.response_model is None:
            return None
        schema = to_strict_json_schema(self.response_model)
        name = self.response_model.__name__
        if self.endpoint == BatchEndpoint.RESPONSES:
            return {"text": {"format": {"type": "json_schema", "name": name, "schema": schema, "strict": True}}}
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}}

    def render_body(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The request body for one row.

        >>> RequestTemplate(endpoint="/v1/completions", model="m", prompt="Q: {q}").render_body({"q": "2+2"})
        {'model': 'm', 'prompt': 'Q: 2+2'}
        """
        body: dict[str, Any] = {"model": self.model}
        body.update(_render(self.body, row))
        if self.prompt is not None:
            text = _render(self.prompt, row)
            if self.endpoint == BatchEndpoint.CHAT_COMPLETIONS:
                body["messages"] = [{"role": "user", "content": text}]
            elif self.endpoint in (BatchEndpoint.EMBEDDINGS, BatchEndpoint.MODERATIONS, BatchEndpoint.RESPONSES):
                body["input"] = text
            else:
                body["prompt"] = text
        if self.messages is not None:
            key = "input" if self.endpoint == BatchEndpoint.RESPONSES else "messages"
            body[key] = _render(self.messages, row)
        if self.response_model is not None:
            if self._format is None:
                self._format = self.response_format()
            body.update(self._format)
        if self.body_fn is not None:
            body.update(self.body_fn(dict(row)))
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
    """Stable ``row-<16 hex>`` ids from a row's content; repeats get ``-2``, ``-3``… in order of appearance."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, row: Mapping[str, Any]) -> str:
        data = orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY,
                            default=str)
        base = "row-" + hashlib.blake2b(data, digest_size=8).hexdigest()
        n = self._seen.get(base, 0) + 1
        self._seen[base] = n
        return base if n == 1 else f"{base}-{n}"


def custom_ids(template: RequestTemplate) -> Callable[[Mapping[str, Any]], str]:
    """A function giving each row its custom_id under ``template`` (stateful: call it once per row, in order)."""
    column = template.custom_id_column
    if column is None:
        return _RowIds()

    def from_column(row: Mapping[str, Any]) -> str:
        try:
            value = row[column]
        except KeyError:
            raise KeyError(
                f"custom_id_column {column!r} is not a column of the row; available columns: {', '.join(map(str, row))}"
            ) from None
        if value is None or value == "":
            raise ValueError(f"custom_id_column {column!r} is empty in row {dict(row)!r:.200}")
        return str(value)

    return from_column


def build_requests(rows: Any, template: RequestTemplate) -> Iterator[BatchRequest]:
    """Yield one :class:`BatchRequest` per row (rows as accepted by :func:`iter_rows`)."""
    for _, request in build_rows(rows, template):
        yield request


def build_rows(rows: Any, template: RequestTemplate) -> Iterator[tuple[dict[str, Any], BatchRequest]]:
    """Like :func:`build_requests`, also yielding each source row beside its request."""
    ids = custom_ids(template)
    url = template.endpoint.value
    for row in iter_rows(rows):
        yield row, BatchRequest.model_construct(custom_id=ids(row), method="POST", url=url,
                                                body=template.render_body(row))


"""Result lines parsed into Arrow: each line of the output and error files read once, its columns
spilled as record batches to a temporary Arrow file.

Large result sets are parsed on every core (:class:`Parsers`): the files are cut into segments,
each parsed into its own spill file by this process or a helper process, while the files are still
downloading if the helpers were started first. Spill files in segment order hold the lines in file
order.
"""

import base64
import collections
import importlib.abc
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa

from .errors import OpenAIBatchError
from .success_lines import SuccessLines, tokens

TOKEN_COLUMNS = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens")
VECTOR = pa.list_(pa.float32())
VECTORS = pa.list_(VECTOR)
BATCH_ROWS = 8_192
"""Rows per spilled record batch (memory grows with it: at 16,384 the parse of 200,000 chat
results held ~60 MB more)."""
_CHUNK_LINES = 256
"""Lines turned into Arrow arrays at a time, while their Python objects are still in the CPU's
cache (measured on chat results: ~5% faster than converting a whole record batch of 8,192)."""
_BUFFER = 1 << 20
PROCESSES_ENV = "DAGSTER_OPENAI_BATCH_PARSE_PROCESSES"
"""Environment variable: the most processes that parse result lines (default: the CPUs this process
may run on, at most 4)."""
_MIN_SHARE_BYTES = 4 << 20
"""A helper process is started for every this many bytes of result lines expected, up to
:func:`process_count` processes in all."""
_SEGMENT_BYTES = 8 << 20
"""Result files are parsed in segments of this many bytes (each line by the segment it starts
in), handed to whichever process is free: at the end, processes wait for one another at most
the time of one segment (~0.07 s of chat results)."""
LOW_LINE_BYTES = 400
"""Fewer bytes than a result line of any endpoint holds (a short chat answer takes ~800): times
the requests of a set of batches, the ``expected_bytes`` of :class:`Parsers` started before the
files are downloaded."""


def _chat_answer(body: dict[str, Any]) -> str | None:
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: str | None = message.get("content")
    if content is not None:
        return content
    if message.get("tool_calls"):
        return orjson.dumps(message["tool_calls"]).decode()
    refusal: str | None = message.get("refusal")
    return refusal


def _completion_answer(body: dict[str, Any]) -> str | None:
    text: str | None = (body.get("choices") or [{}])[0].get("text")
    return text


def _responses_answer(body: dict[str, Any]) -> str | None:
    output_text: str | None = body.get("output_text")
    if output_text is not None:
        return output_text
    texts = [
        c.get("text", "")
        for item in body.get("output") or []
        if item.get("type") == "message"
        for c in item.get("content") or []
        if c.get("type") == "output_text"
    ]
    return "".join(texts) if texts else None


def _moderation_answer(body: dict[str, Any]) -> str | None:
    """The flags of one input, or a JSON list of them (in input order) when the request had
    several."""
    flags = [
        {
            "flagged": bool(result.get("flagged")),
            "categories": sorted(k for k, v in (result.get("categories") or {}).items() if v),
        }
        for result in body.get("results") or [{}]
    ]
    return orjson.dumps(flags if len(flags) > 1 else flags[0]).decode()


_TEXT_ANSWERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "/v1/chat/completions": _chat_answer,
    "/v1/completions": _completion_answer,
    "/v1/responses": _responses_answer,
    "/v1/moderations": _moderation_answer,
}
"""How each endpoint's text answer is read from its response body."""


def _no_answer(body: dict[str, Any]) -> None:
    return None


def _vectors(body: dict[str, Any]) -> tuple[list[np.ndarray] | None, dict[str, Any]]:
    """The vectors of an embeddings body (in input order), and the body without them."""
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return None, body
    items = sorted(data, key=lambda d: d.get("index") or 0) if len(data) > 1 else data
    vectors = []
    for item in items:
        vector = item.get("embedding")
        if isinstance(vector, str):
            vectors.append(np.frombuffer(base64.b64decode(vector), dtype="<f4"))
        else:
            vectors.append(np.asarray(vector, dtype=np.float32))
    kept = [{k: v for k, v in item.items() if k != "embedding"} for item in data]
    return vectors, {**body, "data": kept}


def _usage(body: dict[str, Any]) -> tuple[int | None, int | None, int | None, int | None]:
    """(input, cached, output, reasoning) tokens of a body's usage: Chat Completions' names, else
    the Responses API's."""
    u = body.get("usage")
    if u.__class__ is not dict:
        return tokens(None, None, None, None)
    inp = u.get("prompt_tokens")
    if inp is None:
        inp = u.get("input_tokens")
    out = u.get("completion_tokens")
    if out is None:
        out = u.get("output_tokens")
    details = u.get("prompt_tokens_details") or u.get("input_tokens_details")
    cached = details.get("cached_tokens") if details else None
    details = u.get("completion_tokens_details") or u.get("output_tokens_details")
    reasoning = details.get("reasoning_tokens") if details else None
    return tokens(inp, cached, out, reasoning)


_SPILL_SCHEMA = [
    ("custom_id", pa.string()),
    ("status", pa.string()),
    ("status_code", pa.int32()),
    ("error_code", pa.string()),
    ("error_message", pa.string()),
    ("response_body", pa.string()),
    ("answer", pa.string()),
    *((name, pa.int64()) for name in TOKEN_COLUMNS),
    ("file_batch_id", pa.string()),
    ("request_id", pa.string()),
    ("model", pa.string()),
]
"""One parsed result line: the result columns (``file_batch_id``: the batch of its file, if known)
and the model that answered (successes only). Embeddings answers are spilled as lists of
vectors."""


def spill_schema(endpoint: str) -> pa.Schema:
    answer = VECTORS if endpoint == "/v1/embeddings" else pa.string()
    return pa.schema([(n, answer if n == "answer" else t) for n, t in _SPILL_SCHEMA])


def _failure(line: dict[str, Any]) -> tuple[Any, ...]:
    """(response body as JSON bytes, request_id, status, status_code, error_code, error_message)
    of a line that is not a success."""
    response, error = line.get("response"), line.get("error")
    if isinstance(response, dict):
        code, request_id, raw_body = (
            response.get("status_code"),
            response.get("request_id"),
            response.get("body"),
        )
        body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else {}
        raw_error = body.get("error")
        e: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        error_code = e.get("code") or e.get("type") or f"http_{code}"
        return orjson.dumps(body), request_id, "failed", code, error_code, e.get("message")
    if isinstance(error, dict):
        code = error.get("code")
        status = {"batch_expired": "expired", "batch_cancelled": "cancelled"}.get(
            code or "", "failed"
        )
        return None, None, status, None, code, error.get("message")
    return (
        None,
        None,
        "failed",
        None,
        "malformed_result_line",
        "result line has neither response nor error",
    )


_PER_LINE = ("custom_id", "response_body", "answer", *TOKEN_COLUMNS, "request_id", "model")
"""The spill columns collected line by line (the status columns are those of a success unless
the line is among the failures; ``file_batch_id`` is the segment's)."""


class Segment(NamedTuple):
    """The lines of ``path`` that start at a byte in [start, end), from the batch ``batch_id``."""

    path: str
    start: int
    end: int
    batch_id: str | None


class SpillFile(NamedTuple):
    """A spill file written: its path, the rows of each of its record batches, and whether some
    embeddings success embedded several inputs (so its answers are lists of vectors)."""

    path: str
    batch_rows: list[int]
    several_inputs: bool


class ResultLineError(OpenAIBatchError, ValueError):
    """A result line that is not JSON with a custom_id (a truncated or foreign file)."""


class ParseProcessError(OpenAIBatchError, RuntimeError):
    """A helper process parsing result lines failed (not because of a line)."""


class _SpillWriter:
    """Parses segments into record batches of :data:`BATCH_ROWS` rows in an Arrow file."""

    def __init__(self, path: str, endpoint: str) -> None:
        self.path = path
        self.endpoint = endpoint
        self.embeddings = endpoint == "/v1/embeddings"
        self.success_lines = SuccessLines.for_endpoint(endpoint)
        self.schema = spill_schema(endpoint)
        self.writer = pa.ipc.new_file(path, self.schema)
        self.columns: dict[str, list[Any]] = {name: [] for name in _PER_LINE}
        self.failures: list[tuple[int, Any, Any, Any, Any]] = []
        self.chunks: list[list[pa.Array]] = []
        """Arrays of the lines converted and not yet written, one list per chunk of lines."""
        self.pending = 0
        self.batch_rows: list[int] = []
        self.several_inputs = False
        self.successes = {
            "status": pa.array(["succeeded"] * _CHUNK_LINES, pa.string()),
            "status_code": pa.array([200] * _CHUNK_LINES, pa.int32()),
            "error_code": pa.nulls(_CHUNK_LINES, pa.string()),
            "error_message": pa.nulls(_CHUNK_LINES, pa.string()),
        }
        """The status columns of a chunk of successes (sliced)."""
        self.batch_ids: tuple[str | None, pa.Array] = (None, pa.nulls(_CHUNK_LINES, pa.string()))
        """A batch id and a chunk's ``file_batch_id`` column of it (sliced)."""

    def read(self, segment: Segment) -> None:
        loads, dumps, usage = orjson.loads, orjson.dumps, _usage
        text_answer = _TEXT_ANSWERS.get(self.endpoint, _no_answer)
        decode = self.success_lines.decode if self.success_lines is not None else None
        embeddings = self.embeddings
        columns, failures = self.columns, self.failures
        add_id, add_body, add_answer, add_in, add_cached, add_out, add_reasoning, add_rid = (
            columns[name].append for name in _PER_LINE[:-1]
        )
        add_model = columns["model"].append
        ids = columns["custom_id"]
        path, start, end, batch_id = segment
        answer: str | list[np.ndarray] | None
        with open(path, "rb", buffering=_BUFFER) as f:
            at = start
            if start > 0:  # the line under way at `start` belongs to the share before
                f.seek(start - 1)
                at += len(f.readline()) - 1
            for raw in f:
                if at >= end:
                    break
                success = decode(raw) if decode is not None else None
                if success is not None:  # the usual success of a text endpoint
                    cid, body_json, answer, inp, cached, out, reasoning, request_id, model = success
                else:
                    try:
                        line = loads(raw)
                        cid = line["custom_id"]
                    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
                        if raw.isspace():
                            at += len(raw)
                            continue
                        raise ResultLineError(
                            f"{path}: byte {at}: not a batch result line ({e}); is the file "
                            "complete? Download it again"
                        ) from None
                    response = line.get("response")
                    if response.__class__ is dict and response.get("status_code") == 200:
                        body = response.get("body")
                        if body.__class__ is not dict:
                            body = {}
                        inp, cached, out, reasoning = usage(body)
                        if embeddings:
                            answer, body = _vectors(body)
                            if answer is not None and len(answer) > 1:
                                self.several_inputs = True
                        else:
                            answer = text_answer(body)
                        body_json = dumps(body)
                        request_id = response.get("request_id")
                        model = body.get("model")
                    else:
                        body_json, request_id, *failure = _failure(line)
                        failures.append((len(ids), *failure))
                        inp = cached = out = reasoning = answer = model = None
                at += len(raw)
                add_id(cid)
                add_body(body_json)
                add_answer(answer)
                add_in(inp)
                add_cached(cached)
                add_out(out)
                add_reasoning(reasoning)
                add_rid(request_id)
                add_model(model)
                if len(ids) == _CHUNK_LINES:
                    self._convert(path, batch_id)
        self._convert(path, batch_id)

    def _convert(self, path: str, batch_id: str | None) -> None:
        """Turn the lines collected into Arrow arrays (response bodies as JSON bytes), then empty
        the lists; write a record batch once :data:`BATCH_ROWS` rows are pending."""
        columns, failures = self.columns, self.failures
        n = len(columns["custom_id"])
        if not n:
            return
        values: dict[str, Any] = {**columns, **self._status_columns(n)}
        if self.batch_ids[0] != batch_id:
            self.batch_ids = (batch_id, pa.array([batch_id] * _CHUNK_LINES, pa.string()))
        values["file_batch_id"] = self.batch_ids[1].slice(0, n)
        arrays = []
        for field in self.schema:
            column = values[field.name]
            if isinstance(column, pa.Array):
                arrays.append(column)
            elif field.name == "response_body":
                arrays.append(_text(path, columns["custom_id"], column))
            elif field.name == "answer" and self.embeddings:
                arrays.append(_vector_lists(column))
            elif field.name == "custom_id":  # text, even where a service wrote a number
                if any(i.__class__ is not str for i in column):
                    column = [str(i) for i in column]
                arrays.append(pa.array(column, pa.string()))
            else:
                arrays.append(pa.array(column, field.type))
        self.chunks.append(arrays)
        self.pending += n
        for values_list in columns.values():
            values_list.clear()
        failures.clear()
        if self.pending >= BATCH_ROWS:
            self._write()

    def _status_columns(self, n: int) -> dict[str, Any]:
        """The status columns of the ``n`` lines collected: slices of arrays made once where all
        are successes."""
        if not self.failures:
            return {name: array.slice(0, n) for name, array in self.successes.items()}
        status, code = ["succeeded"] * n, [200] * n
        error_code: list[Any] = [None] * n
        error_message: list[Any] = [None] * n
        for i, *failure in self.failures:
            status[i], code[i], error_code[i], error_message[i] = failure
        return {
            "status": status,
            "status_code": code,
            "error_code": error_code,
            "error_message": error_message,
        }

    def _write(self) -> None:
        if not self.pending:
            return
        if len(self.chunks) == 1:
            arrays = self.chunks[0]
        else:
            arrays = [pa.concat_arrays(parts) for parts in zip(*self.chunks, strict=True)]
        self.writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.batch_rows.append(self.pending)
        self.chunks.clear()
        self.pending = 0
        # Arrow's allocator (mimalloc) keeps freed chunks for reuse; hand them back so the
        # parse's memory stays flat.
        pa.default_memory_pool().release_unused()

    def close(self) -> SpillFile:
        self._write()
        self.writer.close()
        return SpillFile(self.path, self.batch_rows, self.several_inputs)


def _text(path: str, custom_ids: list[Any], bodies: list[bytes | None]) -> pa.Array:
    """Response bodies as a string array, checked to be UTF-8 (bodies kept as the service wrote
    them were not checked when their line was read)."""
    array = pa.array(bodies, pa.binary())
    try:
        return array.cast(pa.string())
    except pa.ArrowInvalid:
        for cid, body in zip(custom_ids, bodies, strict=True):
            try:
                (body or b"").decode()
            except UnicodeDecodeError as e:
                raise ResultLineError(
                    f"{path}: the line of custom_id {cid!r} is not UTF-8 text ({e}); is the "
                    "file complete? Download it again"
                ) from None
        raise


def _vector_lists(values: Iterable[list[np.ndarray] | None]) -> pa.Array:
    """Rows of vectors (or None) as a list<list<float32>> array."""
    rows = list(values)
    counts = np.array([0 if r is None else len(r) for r in rows], dtype=np.int32)
    vectors = [v for r in rows if r is not None for v in r]
    lengths = np.array([len(v) for v in vectors], dtype=np.int32)
    flat = np.concatenate(vectors) if vectors else np.array([], np.float32)
    inner = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
        pa.array(flat, pa.float32()),
    )
    return pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)),
        inner,
        mask=pa.array([r is None for r in rows], pa.bool_()),
    )


def parse_segments(segments: Sequence[Segment], endpoint: str, path: str) -> SpillFile:
    """Parse the lines of ``segments``, in order, into the spill file ``path``."""
    writer = _SpillWriter(path, endpoint)
    try:
        for segment in segments:
            writer.read(segment)
    finally:
        spill = writer.close()
    return spill


def process_count() -> int:
    """How many processes may parse result lines: :data:`PROCESSES_ENV` if set, else the CPUs
    this process may run on (at most 4)."""
    configured = os.environ.get(PROCESSES_ENV, "").strip()
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise ValueError(
                f"{PROCESSES_ENV}={configured!r}: give a whole number of processes, 1 or more"
            )
        return int(configured)
    return min(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4
    )


class Parsers:
    """The processes that parse result lines: this one and helper processes
    (``python -m dagster_openai_batch.core.result_lines``, which import neither Dagster nor the
    SDK), at most :func:`process_count` in all.

    Files are cut into segments of about :data:`_SEGMENT_BYTES`, each parsed into its own spill
    file by whichever process is free. Helpers start when this object is made, before the result
    files are downloaded, and, once ready (imports done), parse each file as soon as it is
    :meth:`add`-ed, while the others download; :meth:`finish` then parses what is left here too,
    and waits only for the segments helpers are parsing, not for a helper still starting. Helpers
    are started only if ``expected_bytes`` (a low guess) will keep them busy. On leaving the
    context, helpers still running are stopped and the spill files deleted.

    Example:
        >>> with Parsers("/v1/chat/completions", None, expected_bytes=10) as parsers:
        ...     parsers.helpers, parsers.finish([])  # too few bytes for a helper; no files
        ([], [])
    """

    def __init__(self, endpoint: str, work_dir: Path | None, *, expected_bytes: int) -> None:
        self.endpoint = endpoint
        self.spill_dir = Path(tempfile.mkdtemp(prefix="result-lines-", dir=work_dir))
        """The spill files' directory, in ``work_dir`` (the system's temporary directory if
        None), deleted on :meth:`close`."""
        self.pending: collections.deque[Segment] = collections.deque()
        self.ready = threading.Condition()
        self.closed = False
        self.added: dict[str, int] = {}
        """The bytes of each file added, by path."""
        self.spills: dict[tuple[str, int], SpillFile] = {}
        """The spill file of each segment parsed, by (path, start)."""
        self.failures: list[OpenAIBatchError] = []
        self.in_flight = 0
        """Segments handed to helpers and not answered yet."""
        self.numbers = itertools.count()
        helpers = max(0, min(process_count(), expected_bytes // _MIN_SHARE_BYTES) - 1)
        errors = [self.spill_dir / f"helper-{i}.err" for i in range(helpers)]
        self.helpers = [_spawn(error) for error in errors]
        self.feeders = [
            threading.Thread(target=self._feed, args=pair, daemon=True)
            for pair in zip(self.helpers, errors, strict=True)
        ]
        for feeder in self.feeders:
            feeder.start()

    def __enter__(self) -> "Parsers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, path: Path, batch_id: str | None) -> None:
        """Queue the lines of a result file (from the batch ``batch_id``, if known)."""
        with self.ready:
            if str(path) in self.added:
                return
            size = self.added[str(path)] = Path(path).stat().st_size
            for start in range(0, size, _SEGMENT_BYTES):
                self.pending.append(
                    Segment(str(path), start, min(start + _SEGMENT_BYTES, size), batch_id)
                )
            self.ready.notify_all()

    def finish(self, files: Sequence[tuple[Path, str | None]]) -> list[SpillFile]:
        """Parse every line of ``files`` (each with its batch id, if known; those not added yet
        are added), this process taking segments too; the spill files in file order."""
        for path, batch_id in files:
            self.add(path, batch_id)
        with self.ready:
            self.closed = True
            self.ready.notify_all()
        while segment := self._next():
            self.spills[segment.path, segment.start] = parse_segments(
                [segment], self.endpoint, self._spill_path()
            )
        with self.ready:  # the segments helpers are parsing; not a helper still starting
            while self.in_flight and not self.failures:
                self.ready.wait()
        if self.failures:
            raise self.failures[0]
        return [
            self.spills[str(path), start]
            for path, _ in files
            for start in range(0, self.added[str(path)], _SEGMENT_BYTES)
        ]

    def close(self) -> None:
        """Stop: segments not started are dropped, helpers finish the one they parse and exit,
        and the spill files are deleted."""
        with self.ready:
            self.closed = True
            self.pending.clear()
            self.ready.notify_all()
        for feeder in self.feeders:
            feeder.join()
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    def _next(self, *, helper: bool = False) -> Segment | None:
        """The next segment to parse (by a ``helper``: counted in flight until answered); None
        once the files are all added and none is left (or after a failure)."""
        with self.ready:
            while not self.pending and not self.closed:
                self.ready.wait()
            if self.failures or not self.pending:
                return None
            self.in_flight += helper
            return self.pending.popleft()

    def _spill_path(self) -> str:
        return str(self.spill_dir / f"lines-{next(self.numbers)}.arrow")

    def _feed(self, helper: subprocess.Popen[bytes], errors: Path) -> None:
        """Hand segments to ``helper`` one at a time once it is ready, until none is left; then
        stop it (``errors``: where its standard error goes). A helper still starting takes no
        segment: this process parses them meanwhile."""
        assert helper.stdin is not None
        assert helper.stdout is not None
        try:
            if not helper.stdout.readline():  # its "ready" line
                raise BrokenPipeError
            while segment := self._next(helper=True):
                job = {"segment": segment, "endpoint": self.endpoint, "path": self._spill_path()}
                helper.stdin.write(json.dumps(job).encode() + b"\n")
                helper.stdin.flush()
                reply = helper.stdout.readline()
                if not reply:
                    raise BrokenPipeError
                answer = json.loads(reply)
                if "bad_line" in answer:
                    raise ResultLineError(answer["bad_line"])
                self.spills[segment.path, segment.start] = SpillFile(*answer["spill"])
                with self.ready:
                    self.in_flight -= 1
                    self.ready.notify_all()
            helper.stdin.close()
            helper.wait()
        except ResultLineError as error:
            self._fail(error)
        except (BrokenPipeError, ValueError):  # it died
            helper.kill()
            helper.wait()
            message = errors.read_text(errors="replace").strip()[-2000:]
            self._fail(
                ParseProcessError(
                    f"a process parsing result lines failed (exit code {helper.returncode}): "
                    f"{message}"
                )
            )
        finally:
            if helper.poll() is None:
                helper.kill()
                helper.wait()

    def _fail(self, error: OpenAIBatchError) -> None:
        with self.ready:
            self.failures.append(error)
            self.pending.clear()
            self.ready.notify_all()


def _spawn(errors: Path) -> subprocess.Popen[bytes]:
    """A fresh interpreter that parses the segments it is given on its standard input, its
    standard error to the file ``errors`` (a pipe nobody reads could fill up and stop it); started
    with ``-m``, so the caller's main module is never run again, with this package on its path."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_root, *sys.path])}
    with errors.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
        )


class _WithoutPandas(importlib.abc.MetaPathFinder):
    """pyarrow imports pandas on its first conversion of Python objects, only to tell whether they
    are pandas objects (~0.25 s): a helper process has none, so it refuses that import."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ImportError("a result-line helper process does not use pandas")


def _main() -> None:
    """A helper process: for each job line on standard input (a segment, the endpoint, a spill
    file path), parse the segment into the spill file and answer one line, until the input ends."""
    sys.meta_path.insert(0, _WithoutPandas())
    pa.array(["ready"])  # converting once loads what conversions need, before the first job
    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        job = json.loads(line)
        try:
            spill = parse_segments([Segment(*job["segment"])], job["endpoint"], job["path"])
        except ResultLineError as error:
            answer: dict[str, Any] = {"bad_line": str(error)}
        else:
            answer = {"spill": spill}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    os._exit(0)  # every answer is flushed and every spill file closed: no teardown (~30 ms)


if __name__ == "__main__":
    _main()

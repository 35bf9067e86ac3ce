"""The root of this library's exceptions: :class:`OpenAIBatchError`.

Every library error derives from it and keeps its builtin base too, so ``except ValueError``
still works:

>>> from dagster_openai_batch.core.client import BatchClientError
>>> issubclass(BatchClientError, OpenAIBatchError), issubclass(BatchClientError, RuntimeError)
(True, True)
"""


class OpenAIBatchError(Exception):
    """The root of every error this library raises."""

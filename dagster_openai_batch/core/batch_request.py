"""The request model: one line of a batch input file.

>>> BatchRequest(custom_id="r1", url="/v1/embeddings", body={"model": "m", "input": "hi"}).method
'POST'
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class BatchRequest(BaseModel):
    """One line of a batch input file: ``{custom_id, method, url, body}``."""

    model_config = ConfigDict(frozen=True)

    custom_id: str
    method: Literal["POST"] = "POST"
    url: str
    body: dict[str, Any]

"""Result files expire as on the service: `output_expires_after` after they are written, 30 days
by default; an expired or deleted file is gone from every operation."""

from __future__ import annotations

import openai
import pytest
from emu_helpers import chat_line, start
from openai.types import FileObject

DAY = 86400


@pytest.mark.parametrize("seconds", [None, 3600])
def test_result_files_expire(client: openai.OpenAI, check, clock, seconds: int | None) -> None:
    extra = (
        {}
        if seconds is None
        else {"output_expires_after": {"anchor": "created_at", "seconds": seconds}}
    )
    batch_id = start(client, [chat_line(i) for i in range(3)], **extra)
    clock.advance(60)
    batch = client.batches.retrieve(batch_id)
    assert batch.status == "completed"
    assert batch.output_file_id
    raw = check(client.files.with_raw_response.retrieve(batch.output_file_id))
    output = FileObject.model_validate(raw)
    assert output.purpose == "batch_output"
    assert output.expires_at == output.created_at + (seconds or 30 * DAY)
    listed = client.files.list(purpose="batch_output").data
    assert [f.id for f in listed] == [output.id]
    clock.advance((seconds or 30 * DAY) + 1)
    for gone in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            gone(output.id)
    assert client.files.list(purpose="batch_output").data == []


def test_bad_anchor_names_the_parameter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        start(
            client,
            [chat_line(1)],
            output_expires_after={"anchor": "completed_at", "seconds": 3600},
        )
    assert err.value.param == "output_expires_after.anchor"

"""Limits per service: Azure files hold 100,000 requests, OpenAI's 50,000; compatible services
take longer completion windows, sent by the batch client as configured."""

from pathlib import Path

import openai
import pytest
from compatible_service import CompatibleGateway, decode, serve_gateway

from dagster_openai_batch.core import BatchClient, RequestTemplate, prepare_rows, write_batch_input
from dagster_openai_batch.core.service_profile import OPENAI_PROFILE, profile_for
from dagster_openai_batch.emulator import Emulator, EmulatorConfig, Pace

CHAT = "/v1/chat/completions"


def chat_requests(n: int) -> list[dict]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return [{"custom_id": f"r{i}", "url": CHAT, "body": body} for i in range(n)]


@pytest.mark.parametrize(
    ("kind", "parts"), [("azure", [100_000, 1]), ("openai", [50_000, 50_000, 1])]
)
def test_an_input_is_split_at_the_service_limit(tmp_path: Path, kind: str, parts: list) -> None:
    prepared = write_batch_input(
        chat_requests(100_001), tmp_path, endpoint=CHAT, profile=profile_for(kind)
    )
    assert [part.requests for part in prepared.parts] == parts
    assert sum(1 for _ in prepared.custom_ids()) == 100_001


def test_a_smaller_limit_of_the_caller_wins_and_a_larger_one_is_capped(tmp_path: Path) -> None:
    rows = [{"id": i, "w": "x"} for i in range(7)]
    template = RequestTemplate(endpoint=CHAT, model="gpt-4o-mini", prompt="{w}")
    sooner = prepare_rows(
        rows, template, tmp_path / "a", profile=profile_for("azure"), max_requests=3
    )
    assert [p.requests for p in sooner.parts] == [3, 3, 1]
    capped = write_batch_input(
        chat_requests(50_001), tmp_path / "b", endpoint=CHAT, max_requests=99_999
    )
    assert [p.requests for p in capped.parts] == [50_000, 1]  # OpenAI's limit, whatever asked


def test_only_a_compatible_service_takes_another_window() -> None:
    assert profile_for("compatible", completion_window="7d").completion_window == "7d"
    assert OPENAI_PROFILE.completion_window == profile_for("azure").completion_window == "24h"
    for kind in ("openai", "azure", "emulator"):
        with pytest.raises(ValueError, match="takes only '24h'"):
            profile_for(kind, completion_window="48h")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="write hours or days"):
        profile_for("compatible", completion_window="1 week")


def test_the_client_sends_the_window_and_adopts_by_key_whatever_the_ids(tmp_path: Path) -> None:
    gateway = CompatibleGateway(Emulator(tmp_path / "emu", EmulatorConfig(pace=Pace.fast())))
    with serve_gateway(gateway) as url:
        bc = BatchClient(
            openai.OpenAI(api_key="sk-test", base_url=url, max_retries=0),
            profile=profile_for("compatible", completion_window="48h"),
            backoff=0.01,
        )
        prepared = write_batch_input(chat_requests(3), tmp_path / "in", endpoint=CHAT)
        file_id = bc.upload(prepared.parts[0]).id
        assert decode(file_id).startswith("file-")  # a base64 id, as LiteLLM gives
        batch, adopted = bc.create_or_adopt(
            input_file_id=file_id, endpoint=CHAT, idempotency_key="k"
        )
        again, adopted_again = bc.create_or_adopt(
            input_file_id=file_id, endpoint=CHAT, idempotency_key="k"
        )
    assert (adopted, adopted_again) == (False, True)
    assert again.id == batch.id
    assert batch.completion_window == "48h"
    assert gateway.windows == ["48h"]  # one create, with the configured window

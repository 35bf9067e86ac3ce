"""The servers a production-shaped deployment talks to, each a real process on loopback:
PostgreSQL (Debian's package), an S3-compatible object store, and the OpenAI emulator over HTTP.

The object store is moto's server (``moto[server]`` from PyPI): no real S3-compatible server
(MinIO, Ceph…) is in Debian's or PyPI's registries, and moto speaks the S3 REST API that pyarrow,
boto3 and dagster-aws use.
"""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise TimeoutError(
        f"nothing listens on port {port} after {timeout}s: {log.read_text()[-2000:]}"
    )


def postgres_bin() -> Path | None:
    """The directory of Debian's PostgreSQL server programs (``initdb``, ``pg_ctl``), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A throw-away PostgreSQL server in a temporary directory; yields its SQLAlchemy URL.

    PostgreSQL refuses to run as root, so as root it runs as Debian's ``postgres`` user.
    """
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="openai-batch-pg-"))  # not under pytest's 0700 tmp dir
    if as_user:
        shutil.chown(root, "postgres")
    port = free_port()
    data, log = root / "data", root / "server.log"
    try:
        subprocess.run(
            [*as_user, bindir / "initdb", "-D", data, "-A", "trust", "-U", "dagster", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*as_user, bindir / "pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "start"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_user,
                bindir / "createdb",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "dagster",
                "dagster",
            ],
            check=True,
            capture_output=True,
        )
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; dagster-postgres installs psycopg2.
        yield f"postgresql+psycopg2://dagster@127.0.0.1:{port}/dagster"
    finally:
        subprocess.run(
            [*as_user, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def object_store(log_dir: Path, bucket: str) -> Iterator[dict[str, str]]:
    """moto's S3 server with ``bucket`` created; yields the environment that points at it (read by
    pyarrow, boto3 and dagster-aws alike)."""
    port = free_port()
    log = log_dir / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        wait_for_port(port, server, log, timeout=60)
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=bucket)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def emulator_server(data_dir: Path, log_dir: Path, api_key: str) -> Iterator[str]:
    """The OpenAI emulator over HTTP (fast pace) in its own process; yields its base URL."""
    port = free_port()
    log = log_dir / "emulator.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster_openai_batch.emulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--pace",
                "fast",
                "--api-key",
                api_key,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, server, log, timeout=60)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(timeout=30)

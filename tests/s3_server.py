"""A real S3 server on 127.0.0.1 for the tests: moto's, in a thread, reached by the unmodified s3fs client.

The `s3` fixture (`from s3_server import s3_fixture  # noqa: F401`) starts it once per session and points
the AWS environment at it (`AWS_ENDPOINT_URL` and test credentials, which s3fs, botocore and child processes
read), so `s3://` URLs in a test go there and nowhere else. Each test gets a bucket of its own: `s3.bucket()`.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no credential lookup on the network
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class S3:
    """The running server: its endpoint, an s3fs filesystem on it, and buckets made for tests."""

    endpoint: str
    fs: object
    _names: Iterator[int] = field(default_factory=itertools.count)

    def bucket(self) -> str:
        """A new empty bucket's name (moto's buckets outlive a server: another module's server made some)."""
        while True:
            name = f"bucket-{next(self._names)}"
            try:
                self.fs.mkdir(name)
            except FileExistsError:
                continue
            return name

    def upload(self, folder: Path, url: str) -> str:
        """Copy a local folder's files to `url` (s3://bucket/prefix)."""
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        self.fs.put([str(p) for p in files], [f"{url}/{p.relative_to(folder).as_posix()}" for p in files])
        return url

    def download(self, url: str, folder: Path) -> Path:
        """Copy every object under `url` into `folder`."""
        base = url.removeprefix("s3://")
        for key in self.fs.find(base):
            target = folder / key[len(base) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(key, str(target))
        return folder

    def keys(self, url: str) -> list[str]:
        """The keys under `url`, relative to it."""
        base = url.removeprefix("s3://")
        return sorted(key[len(base) + 1 :] for key in self.fs.find(base))


@pytest.fixture(name="s3", scope="session")
def s3_fixture() -> Iterator[S3]:
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    endpoint = f"http://127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in [*ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(ENV, AWS_ENDPOINT_URL=endpoint)
    import s3fs

    try:
        yield S3(endpoint, s3fs.S3FileSystem(skip_instance_cache=True))
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

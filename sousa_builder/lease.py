"""A lease on an output in object storage, which has no lock: one object, `OUT/.sousa/lease.json`, with an expiry.

A run takes the lease by creating the object only if it does not exist (a conditional put, `If-None-Match: *`, on
S3 and the stores that honour it), renews it while it lives, checks that it still holds it before it puts its
output in place, and deletes it at the end. A lease that expired (its run died) is taken over. The limits are in
docs/object-storage.md: clocks of the machines must agree within the lease's time, and a store that ignores the
condition lets two runs that start within the same moment both take it. A lease of a process of this machine
that is gone (SIGKILL) is taken over at once; one of another machine only once it expires.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any

from .errors import OutputBusyError

logger = logging.getLogger(__name__)

LEASE_SECONDS = 300.0  # how long a lease lasts without being renewed
RENEW_EVERY = 60.0


class Lease:
    """The lease object at `path` (in `fs`) on the output `out`, held in a `with` block and renewed meanwhile."""

    def __init__(self, fs: Any, path: str, out: str, seconds: float = LEASE_SECONDS, renew_every: float = RENEW_EVERY):
        self.fs, self.path, self.out = fs, path, out
        self.seconds, self.renew_every = seconds, renew_every
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.take()
        self._renewer = threading.Thread(target=self._renew, name="sousa-lease", daemon=True)
        self._renewer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.renew_every)
        try:
            if (self._read() or {}).get("owner") == self.owner:
                self.fs.rm_file(self.path)
        except Exception as err:  # an expired lease is taken over; nothing is lost by leaving it
            logger.warning("could not remove the lease %s (%s); it expires by itself", self.path, err)

    def take(self) -> None:
        """Create the lease object, or take over an expired one.

        Raises:
            [`~errors.OutputBusyError`]:
                Another run holds a lease that has not expired.
        """
        for _ in range(2):
            if self._create():
                return
            held = self._read()
            if held is None:  # removed meanwhile: try again
                continue
            expires = float(held.get("expires", 0))
            if expires > time.time() and not _dead_here(str(held.get("owner", ""))):
                when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
                raise OutputBusyError(
                    f"{self.out}: another sousa-builder run is writing it now ({held.get('owner', '?')}, its lease "
                    f"{self.path.rsplit('/', 1)[-1]} expires at {when} unless renewed); wait for it to end, then run "
                    "again"
                )
            logger.info("taking over the lease of %s of a run that is gone (%s)", self.out, held.get("owner", "?"))
            self.fs.rm_file(self.path)
        raise OutputBusyError(f"{self.out}: another sousa-builder run took its lease at the same time; run again")

    def confirm(self) -> None:
        """Check that this run still holds the lease (before it changes OUT).

        Raises:
            [`~errors.OutputBusyError`]:
                The lease expired and another run took it, or it is gone.
        """
        held = self._read() or {}
        if held.get("owner") != self.owner:
            raise OutputBusyError(
                f"{self.out}: this run lost its lease (it could not renew it in time, and "
                f"{held.get('owner', 'nobody')} holds it now); nothing was put in place: run again"
            )
        self._write(overwrite=True)

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + self.seconds}).encode()

    def _create(self) -> bool:
        """Create the lease object if none exists; False if one does."""
        return self._write(overwrite=False)

    def _write(self, overwrite: bool) -> bool:
        bucket, _, key = self.fs._strip_protocol(self.path).partition("/")
        if hasattr(self.fs, "call_s3"):  # s3fs: a conditional put where it is a new object
            condition = {} if overwrite else {"IfNoneMatch": "*"}
            try:
                self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=self._body(), **condition)
            except FileExistsError:  # 412 Precondition Failed: someone holds it
                return False
            self.fs.invalidate_cache(self.path)
            return True
        if not overwrite and self.fs.exists(self.path):  # no condition: a check, then a put (docs: the limits)
            return False
        self.fs.pipe_file(self.path, self._body())
        return True

    def _read(self) -> dict | None:
        self.fs.invalidate_cache(self.path)
        try:
            held = json.loads(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return None
        except ValueError:  # unreadable: treated as expired
            return {"owner": "?", "expires": 0}
        return held if isinstance(held, dict) else {"owner": "?", "expires": 0}

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                if (self._read() or {}).get("owner") == self.owner:
                    self._write(overwrite=True)
            except Exception as err:  # a failed renewal is retried; `confirm` refuses a lost lease
                logger.warning("could not renew the lease on %s (%s)", self.out, err)


def _dead_here(owner: str) -> bool:
    """Whether the lease's owner ("host:pid:id") was a process of this machine that is gone (killed)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False

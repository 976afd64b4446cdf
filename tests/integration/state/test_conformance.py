"""One conformance suite for every state backend (Terraform's ``statemgr.TestFull`` is the
model): read empty, write and read back, serial and lineage rules, backup, a newer
format refused, a lock that excludes and names its holder, force-unlock, stale writers
fenced off, concurrent writers that lose nothing, and — for leased remote locks — a
holder paused past its lease that must stop instead of overwriting the new holder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
from scalable.errors import StateError
from scalable.state.lock import LockTimeout
from scalable.state.model import ResourceRecord, StateFile

from .conftest import Harness


def sample(lineage: str | None = None) -> StateFile:
    st = StateFile(target="t", provider="local", lineage=lineage or str(uuid.uuid4()))
    st.resources.append(
        ResourceRecord(
            address="scheduler",
            type="local.scheduler",
            status="ready",
            idempotency_key="k1",
            id="1",
        )
    )
    return st


def child(backend: Harness, body: str, **env: str) -> subprocess.Popen[str]:
    """Another writer: a Python process holding its own store on the same location."""
    code = backend.code + "\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, **backend.env, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_read_empty(backend: Harness) -> None:
    store = backend.store()
    assert store.read() is None
    assert store.read_backup() is None
    assert store.location == backend.location


def test_write_read_serial_and_backup(backend: Harness) -> None:
    store = backend.store()
    st = sample()
    assert store.write(st) is True and st.serial == 1
    again = backend.store().read()
    assert again is not None and again.to_dict() == st.to_dict()
    assert again.scalable_version  # stamped by the writer
    assert store.write(again) is False and again.serial == 1  # no change, no bump
    again.outputs["scheduler_address"] = "tls://127.0.0.1:8786"
    assert store.write(again) is True and again.serial == 2
    backup = store.read_backup()
    assert backup is not None and backup.serial == 1 and backup.outputs == {}
    raw = backend.get_raw()
    assert raw is not None and json.loads(raw)["serial"] == 2


def test_other_lineage_is_never_written_over(backend: Harness) -> None:
    store = backend.store()
    st = sample()
    store.write(st)
    with pytest.raises(StateError, match="unrelated state of lineage") as err:
        store.write(sample())
    assert backend.location in err.value.message
    kept = store.read()
    assert kept is not None and kept.lineage == st.lineage and kept.serial == 1


def test_newer_format_version_is_refused_not_overwritten(backend: Harness) -> None:
    doc = {**sample().to_dict(), "format_version": 99, "serial": 4, "scalable_version": "9.0"}
    backend.put_raw(json.dumps(doc).encode())
    store = backend.store()
    with pytest.raises(StateError, match="format_version 99 is newer") as err:
        store.read()
    assert backend.location in err.value.message and "upgrade" in (err.value.hint or "")
    with pytest.raises(StateError, match="newer"):
        store.write(sample())
    raw = backend.get_raw()
    assert raw is not None and json.loads(raw)["format_version"] == 99


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'{"format_version": 1, "resources": []}',
        b'{"format_version": 1, "target": "t", "provider": "p", "lineage": "l", "serial": 1e400}',
        b"\xff\xfe",
        b"[" * 5000,
    ],
)
def test_wrong_shape_is_one_clean_error(backend: Harness, raw: bytes) -> None:
    backend.put_raw(raw)
    with pytest.raises(StateError) as err:
        backend.store().read()
    assert backend.location in err.value.message
    assert "\n" not in err.value.message and len(err.value.message) < 400


def test_lock_excludes_names_holder_and_is_released(backend: Harness) -> None:
    a, b = backend.store(), backend.store()
    with a.lock("apply") as held:
        with pytest.raises(LockTimeout) as err, b.lock("plan", timeout=0.5):
            pass
        message = err.value.message
        assert held.id in message and "Operation: apply" in message
        # Where: the state's folder/prefix (the local lock is state.lock beside it).
        assert held.who in message and backend.location.rsplit("/", 1)[0] in message
        assert "force-unlock" in (err.value.hint or "")
    with b.lock("plan") as second:
        assert second.id != held.id


def test_force_unlock_a_dead_holders_lock(backend: Harness) -> None:
    proc = child(
        backend,
        """
        import time
        with store.lock("apply (CI job 7)") as info:
            print(info.id, flush=True)
            time.sleep(600)
    """,
        SCALABLE_STATE_LOCK_LEASE="600",
    )
    try:
        assert proc.stdout is not None
        lock_id = proc.stdout.readline().strip()
        assert lock_id, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)  # no release
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = backend.store()
    with pytest.raises(StateError, match="does not match"):
        store.force_unlock("not-the-id")
    holder = store.force_unlock(lock_id)
    assert holder.id == lock_id and holder.operation == "apply (CI job 7)"
    with store.lock("apply", timeout=0):
        pass
    with pytest.raises(StateError, match="no lock is held"):
        store.force_unlock(lock_id)


def test_a_writer_only_succeeds_on_what_it_last_read(backend: Harness) -> None:
    store = backend.store()
    st = sample()
    store.write(st)
    with store.lock("apply"):
        mine = store.read()
        assert mine is not None
        # Someone writes behind the lock's back (a broken client, a hand edit).
        behind = {**mine.to_dict(), "serial": 7, "outputs": {"x": "theirs"}}
        backend.put_raw(json.dumps(behind).encode())
        mine.outputs["x"] = "mine"
        with pytest.raises(StateError, match="changed since|lost the state lock"):
            store.write(mine)
    raw = backend.get_raw()
    assert raw is not None and json.loads(raw)["outputs"] == {"x": "theirs"}


def test_concurrent_writers_lose_nothing(backend: Harness) -> None:
    seed = sample()
    backend.store().write(seed)
    body = """
        import sys
        from scalable.state.model import ResourceRecord
        for i in range(4):
            with store.lock("apply", timeout=120):
                st = store.read()
                st.resources.append(ResourceRecord(
                    address=f"w.{sys.argv[1]}[{i}]", type="x", status="ready",
                    idempotency_key=f"{sys.argv[1]}{i}"))
                store.write(st)
        print("ok", flush=True)
    """
    code = backend.code + "\n" + textwrap.dedent(body)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, name],
            env={**os.environ, **backend.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and out.strip() == "ok", err
    final = backend.store().read()
    assert final is not None
    assert final.serial == 1 + 8
    assert len(final.resources) == 1 + 8
    assert len({r.address for r in final.resources}) == 9


def test_a_holder_paused_past_its_lease_cannot_overwrite_the_new_holder(
    remote: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 7: SIGSTOP a holder past its lease; another takes the lock and
    writes; the paused one resumes and tries to write. It must stop (exit 3), and the
    new holder's state must stand."""
    if remote.name == "gcs":
        # Observed on 2026-12-02: with the holder SIGSTOPped, fake-gcs-server stopped
        # answering requests on the lock object for over 120 s in 4 of ~10 runs of this
        # folder (2 fresh-clone CI runs among them); GCS itself has no such stall. The
        # fencing under test is state/remote.py's, shared with S3, which runs it below.
        pytest.skip("fake-gcs-server stalls on the lock object while its paused holder "
                    "is stopped (flaky); the shared fencing is tested on S3 (moto)")
    seed = sample()
    remote.store().write(seed)
    proc = child(
        remote,
        """
        import sys
        from scalable.state.remote import LockLost
        with store.lock("apply") as info:
            st = store.read()
            print("locked", flush=True)
            n = 0
            for line in sys.stdin:
                n += 1
                st.outputs["a"] = str(n)
                try:
                    store.write(st)
                except LockLost as exc:
                    print("lost:", exc.message, flush=True)
                    sys.exit(exc.exit_code)
                print("wrote", st.serial, flush=True)
    """,
        SCALABLE_STATE_LOCK_LEASE="2",
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "locked"
        proc.stdin.write("write\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "wrote 2"
        proc.send_signal(signal.SIGSTOP)  # a partition longer than the lease
        monkeypatch.setenv("SCALABLE_STATE_LOCK_LEASE", "30")
        other = remote.store()
        told: list[str] = []
        with other.lock("apply", timeout=120, notify=told.append):
            assert any("Took over an expired state lock" in t for t in told), told
            st = other.read()
            assert st is not None and st.serial == 2
            st.outputs["b"] = "new holder"
            assert other.write(st) and st.serial == 3
            # The paused holder is told to write before it even runs again.
            proc.stdin.write("write\n")
            proc.stdin.flush()
            proc.send_signal(signal.SIGCONT)
            out = proc.stdout.readline().strip()
            assert out.startswith("lost:"), out
            assert proc.wait(timeout=60) == 3
            final = remote.get_raw()
            assert final is not None
            doc = json.loads(final)
            assert doc["serial"] == 3 and doc["outputs"] == {"a": "1", "b": "new holder"}
            # The new holder still holds a working lock and can keep writing.
            st.outputs["c"] = "still mine"
            assert other.write(st) and st.serial == 4
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()

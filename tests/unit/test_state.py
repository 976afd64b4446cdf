"""State files: atomic writes, backups, serials, versions, the lock."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from scalable.errors import StateError
from scalable.state import LocalStore, LockTimeout, ResourceRecord, StateFile
from scalable.state.lock import read_holder


def rec(addr: str, status: str = "ready") -> ResourceRecord:
    return ResourceRecord(address=addr, type="local.process", status=status,  # type: ignore[arg-type]
                          idempotency_key=f"k-{addr}", id=f"id-{addr}")


def test_write_read_roundtrip_mode_and_backup(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "t")
    st = StateFile(target="t", provider="local", resources=[rec("scheduler")])
    assert store.write(st) and st.serial == 1
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert not store.backup.exists()
    st.resources.append(rec("workers.default[0]"))
    assert store.write(st) and st.serial == 2
    back = json.loads(store.backup.read_text())
    assert back["serial"] == 1 and len(back["resources"]) == 1
    got = store.read()
    assert got is not None and got.lineage == st.lineage
    assert [r.address for r in got.resources] == ["scheduler", "workers.default[0]"]


def test_serial_bumps_only_on_change(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    st = StateFile(target="t", provider="local", resources=[rec("a")])
    store.write(st)
    again = store.read()
    assert again is not None
    assert not store.write(again)
    assert again.serial == 1 and store.read().serial == 1  # type: ignore[union-attr]


def test_no_temp_files_left(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    st = StateFile(target="t", provider="local")
    for i in range(5):
        st.outputs["n"] = str(i)
        store.write(st)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.backup"]


def test_newer_format_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = StateFile(target="t", provider="local").to_dict()
    data["format_version"] = 99
    data["scalable_version"] = "9.9.9"
    store.path.write_text(json.dumps(data))
    with pytest.raises(StateError, match="format_version 99 is newer"):
        store.read()


def test_corrupt_state_names_the_backup(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(StateError) as info:
        store.read()
    assert info.value.hint and "state.json.backup" in info.value.hint


def test_lock_contention_names_the_holder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.lock("apply") as held:
        holder = read_holder(store.lock_path)
        assert holder is not None and holder.id == held.id and holder.operation == "apply"
        t0 = time.monotonic()
        with pytest.raises(LockTimeout) as info, store.lock("destroy", timeout=0.3):
            pass
        assert time.monotonic() - t0 >= 0.3
        assert held.id in str(info.value) and "Operation: apply" in str(info.value)
    with store.lock("destroy"):  # released on exit
        pass


def test_lock_waits_for_release(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    said: list[str] = []
    release = threading.Event()

    def hold() -> None:
        with store.lock("apply"):
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.1)
    threading.Timer(0.8, release.set).start()
    with store.lock("plan", timeout=5, notify=said.append):
        pass
    t.join()
    assert said == ["Acquiring state lock. This may take a few moments..."]


def test_force_unlock_checks_the_id_and_refuses_a_live_holder(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.lock("apply") as held:
        with pytest.raises(StateError, match="does not match"):
            store.force_unlock("wrong")
        with pytest.raises(StateError, match="still held by a live process"):
            store.force_unlock(held.id)

"""The roster file apply reads instead of connecting a Client (scalable.roster)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from scalable.roster import FileRoster, client_versions, snapshot
from scalable.versions import PACKAGES, compare


def test_client_versions_are_what_distributed_reports() -> None:
    # The roster's client side is computed without importing distributed; it must agree
    # with distributed's own report, or every apply would warn about a difference.
    from distributed.versions import get_versions

    ours, theirs = client_versions()["packages"], get_versions()["packages"]
    assert {p: ours[p] for p in PACKAGES} == {p: theirs[p] for p in PACKAGES}


def test_file_roster_names_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "roster.json"
    assert FileRoster.wait_for(path, timeout=0.1) is None  # no scheduler wrote it
    mine = client_versions()
    other = {"packages": {**mine["packages"], "distributed": "2000.1.0"}}
    workers = {f"tcp://127.0.0.1:{i}": SimpleNamespace(name=f"workers.a[{i}]",
                                                       versions=other if i == 7 else mine)
               for i in range(300)}
    data = snapshot(workers, mine)
    assert len(data["versions"]) == 2  # each distinct report once, however many workers
    path.write_text(json.dumps(data))
    roster = FileRoster.wait_for(path, timeout=1.0)
    assert roster is not None and roster.names() == {f"workers.a[{i}]" for i in range(300)}
    versions, names = roster.versions()
    report = compare(versions, names)
    assert [d.package for d in report.errors] == ["distributed"]
    assert report.errors[0].workers == {"2000.1.0": "workers.a[7]",
                                        mine["packages"]["distributed"]: "workers.a[0]"}
    # Mid-replace (unreadable), the last content read stands.
    path.write_text("{")
    assert len(roster.names()) == 300

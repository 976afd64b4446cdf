"""ScalableSession: the tutorial snippet verbatim, attaching to CLI capacity, tag routing."""

from __future__ import annotations

import pytest
from scalable import ScalableSession
from scalable.client import UnknownTag

from tests.conftest import Project, our_processes

pytestmark = pytest.mark.slow

LOCAL = """
    project: {name: sess}
    targets:
      local:
        provider: local
        max_workers: 4
        threads_per_worker: 2
        processes: false
        containers: none
    """


def test_tutorial_snippet_verbatim(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write(LOCAL)
    monkeypatch.chdir(project.root)

    def my_func(i: int) -> int:  # defined by the user, as in the tutorial
        return i * 3

    session = ScalableSession.from_yaml("./scalable.yaml", target="local")
    plan = session.plan()
    client = session.start(plan)
    futures = [client.submit(my_func, i, tag="analysis") for i in range(20)]
    results = client.gather(futures)
    session.close()

    assert results == [i * 3 for i in range(20)]
    assert project.state()["resources"] == []
    assert our_processes(project.root) == []


def test_attaches_to_cli_capacity_and_leaves_it(project: Project) -> None:
    project.write(LOCAL)
    project.run("apply", "--auto-approve", check=True)
    before = project.state()
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()
        assert session.attached
        assert client.submit(lambda i: i * 3, 2).result() == 6
        assert str(client.scheduler.address) == before["outputs"]["scheduler_address"]
    after = project.state()
    assert after["serial"] == before["serial"] and len(after["resources"]) == 2
    assert "No changes." in project.run("plan", check=True).stdout
    project.run("destroy", "--auto-approve", check=True)


def test_tags_route_to_groups_and_unknown_tags_fail_fast(project: Project) -> None:
    project.write("""
        project: {name: tags}
        targets:
          local:
            provider: local
            groups:
              energy: {tags: [energy], max_workers: 1}
              land: {tags: [land], max_workers: 2}
        """)
    with ScalableSession.from_yaml(project.root / "scalable.yaml") as session:
        client = session.start()
        import distributed

        def where() -> str:
            return str(distributed.get_worker().name)

        energy = client.gather([client.submit(where, tag="energy", pure=False)
                                for _ in range(6)])
        land = client.gather(client.map(lambda _: where(), range(6), tag="land", pure=False))
        assert set(energy) == {"workers.energy[0]"}
        assert set(land) <= {"workers.land[0]", "workers.land[1]"}
        with pytest.raises(UnknownTag, match="'water' is not declared"):
            client.submit(where, tag="water")
    assert our_processes(project.root) == []

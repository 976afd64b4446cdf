"""--replace, --only, state mv and import against the real Slurm."""

from __future__ import annotations

from tests.conftest import Project
from tests.integration import test_slurm
from tests.integration.test_slurm import MANIFEST, job_records, lineage_of, our_jobs

pytestmark = test_slurm.pytestmark
hpc = test_slurm.hpc  # the fixture that cancels leftover jobs


def test_import_mv_replace_on_slurm(hpc: Project) -> None:
    hpc.write(MANIFEST)
    hpc.run("apply", "--auto-approve", check=True)
    lineage = lineage_of(hpc)
    jobs = job_records(hpc)
    victim = jobs["workers.default[1]"]["id"]

    # Forget a running job, then import it back by its Slurm job id.
    hpc.run("state", "rm", "workers.default[1]", check=True)
    missing = hpc.run("import", "workers.default[1]", "99999999")
    assert missing.stderr.startswith("Error: Cannot import non-existent remote object")
    out = hpc.run("import", "workers.default[1]", victim, check=True).stdout
    assert "Import successful!" in out
    assert job_records(hpc)["workers.default[1]"]["id"] == victim
    assert hpc.run("plan", "--detailed-exitcode").returncode == 0

    # state mv there and back: the record follows, the job is untouched.
    hpc.run("state", "mv", "workers.default[1]", "workers.default[5]", check=True)
    assert job_records(hpc)["workers.default[5]"]["id"] == victim
    hpc.run("state", "mv", "workers.default[5]", "workers.default[1]", check=True)

    # --replace exactly that job: -/+ in the plan, a new job id after apply.
    plan = hpc.run("plan", "--replace", "workers.default[1]", check=True).stdout
    assert '-/+ slurm.job "workers.default[1]"' in plan
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan
    hpc.run("apply", "--auto-approve", "--replace", "workers.default[1]", check=True)
    after = job_records(hpc)
    assert after["workers.default[1]"]["id"] != victim
    assert after["workers.default[0]"]["id"] == jobs["workers.default[0]"]["id"]
    assert {r["id"] for r in our_jobs(lineage)} == {j["id"] for j in after.values()}

    hpc.run("destroy", "--auto-approve", check=True)
    assert our_jobs(lineage) == []

"""The batch systems' scripts, command lines and status parsers.

SGE also runs against a real SGE (tests/integration/test_sge.py). PBS, LSF and HTCondor
are NOT run against real systems here: their parsers are tested on outputs written in
the formats their documentation shows (PBS Pro ``qstat -f -F json``, LSF 10.1
``bjobs -o … -json``, HTCondor ``condor_q -json``), and their scripts are golden files
under tests/unit/golden/ (regenerate with SCALABLE_REGOLD=1 after a deliberate change).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scalable.providers.batch.htcondor import HtcondorSystem, parse_condor_q_json
from scalable.providers.batch.lsf import LsfSystem, parse_bjobs_json
from scalable.providers.batch.pbs import PbsSystem, parse_qstat_json
from scalable.providers.batch.provider import capped_jobs, lifetime
from scalable.providers.batch.sge import (
    SgeSystem,
    parse_qacct,
    parse_qstat_j,
    parse_qstat_xml,
)
from scalable.providers.batch.system import BatchSystem, JobRequest, message
from scalable.spec import GroupSpec

GOLDEN = Path(__file__).parent / "golden"
LINEAGE = "0123abcd-0000-4000-8000-000000000000"

REQ = JobRequest(
    name="scalable-0123abcd-default-0",
    identity={"lineage": LINEAGE, "address": "workers.default[0]", "key": "0123abcd-k-1"},
    queue="normal",
    account="proj1",
    walltime=5400,
    cores=4,
    memory=8 * 2**30,
    log_directory="/home/u/.scalable/hpc/logs",
    command=[
        "/opt/py/bin/python3",
        "-m",
        "distributed.cli.dask_worker",
        "tls://10.0.0.1:8786",
        "--name",
        "workers.default[0]",
        "--nthreads",
        "4",
    ],
    env={"SCALABLE_TARGET": "hpc", "ODD": "a b;$(x)"},
    python="/opt/py/bin/python3",
    resource_spec="h_vmem=8G",
    parallel_environment="smp",
)


@pytest.mark.parametrize(
    "system", [SgeSystem(), PbsSystem(), LsfSystem(), HtcondorSystem()], ids=lambda s: s.name
)
def test_golden_job_scripts(system: BatchSystem) -> None:
    req = REQ
    if system.name == "htcondor":  # $(…) is a submit macro there: refused (below)
        req = dataclasses.replace(REQ, env={**REQ.env, "ODD": "a b;`x`"})
    text = system.render(req)
    path = GOLDEN / f"job_{system.name}{system.script_suffix()}"
    if os.environ.get("SCALABLE_REGOLD"):
        path.write_text(text)
    assert text == path.read_text()
    # A manifest value never reaches a shell unquoted.
    assert "'a b;$(x)'" in text or "''a b;`x`''" in text


def test_htcondor_refuses_submit_macros() -> None:
    from scalable.providers.base import ProviderError

    with pytest.raises(ProviderError, match="submit macro"):
        HtcondorSystem().render(REQ)


def test_sge_directives() -> None:
    text = SgeSystem().render(REQ)
    for line in (
        "#$ -N scalable-0123abcd-default-0",
        "#$ -q normal",
        "#$ -P proj1",
        "#$ -l h_vmem=8G",
        "#$ -l h_rt=1:30:00",
        "#$ -S /bin/bash",
        "#$ -pe smp 4",
        f"#$ -ac scalable_lineage={LINEAGE},scalable_address=workers.default[0],"
        "scalable_key=0123abcd-k-1",
    ):
        assert line in text.splitlines(), line


def test_command_lines(tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    assert SgeSystem().submit_argv(script) == ["qsub", "-terse", str(script)]
    assert PbsSystem().submit_argv(script) == ["qsub", str(script)]
    assert LsfSystem().submit_argv(script) == ["bsub"]  # script on stdin
    assert HtcondorSystem().submit_argv(script) == ["condor_submit", str(script)]
    os.environ["USER"] = os.environ.get("USER", "u")
    user = os.environ["USER"]
    assert SgeSystem().status_argv() == ["qstat", "-xml", "-u", user]
    assert PbsSystem().status_argv() == ["qstat", "-f", "-F", "json", "-x", "-u", user]
    assert LsfSystem().status_argv()[:4] == ["bjobs", "-a", "-u", user]
    assert HtcondorSystem().status_argv()[:3] == ["condor_q", user, "-json"]
    assert SgeSystem().cancel_argv(["1", "2"]) == ["qdel", "1", "2"]
    assert LsfSystem().cancel_argv(["7"]) == ["bkill", "7"]
    assert HtcondorSystem().cancel_argv(["7.0"]) == ["condor_rm", "7.0"]


def test_submit_outputs() -> None:
    assert SgeSystem().parse_submit("42\n") == "42"
    assert SgeSystem().parse_submit("43.1-4:1\n") == "43"
    assert PbsSystem().parse_submit("1234.pbs-server\n") == "1234.pbs-server"
    assert LsfSystem().parse_submit("Job <5678> is submitted to queue <normal>.\n") == "5678"
    assert (
        HtcondorSystem().parse_submit("Submitting job(s).\n1 job(s) submitted to cluster 91.\n")
        == "91.0"
    )
    from scalable.providers.base import ProviderError

    with pytest.raises(ProviderError, match="no job id"):
        SgeSystem().parse_submit("Your job was rejected\n")


# -- SGE (outputs recorded from the real SGE 8.1.9 of scripts/sge-dev.sh) ------------

QSTAT_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>2</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>scalable-abcd1234-default-0</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-12-01T14:42:58</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>3</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>scalable-abcd1234-default-1</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-12-01T14:42:58</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>4</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>other</JB_name>
      <JB_owner>root</JB_owner>
      <state>Eqw</state>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"""

QSTAT_J = """==============================================================
job_number:                 2
exec_file:                  job_scripts/2
owner:                      root
job_name:                   scalable-abcd1234-default-0
context:                    scalable_lineage=L1,scalable_address=workers.default[0],scalable_key=K0
scheduling info:            There are no messages available
==============================================================
job_number:                 3
job_name:                   other
context:                    foo=bar
"""

QACCT = """==============================================================
qname        all.q
hostname     vm
jobname      scalable-abcd1234-default-1
jobnumber    5
failed       100 : assumedly after job
exit_status  137                  (Killed)
"""


def test_sge_parsers() -> None:
    jobs = parse_qstat_xml(QSTAT_XML)
    assert [(j.id, j.state, j.phase, j.nodes) for j in jobs] == [
        ("2", "r", "alive", "vm"),
        ("3", "qw", "pending", ""),
        ("4", "Eqw", "gone", ""),
    ]
    assert jobs[2].active and jobs[2].stuck  # Eqw: replaced by the plan, still qdel'd
    assert jobs[1].reason == "waiting in the queue"
    assert parse_qstat_j(QSTAT_J) == {
        "2": {"lineage": "L1", "address": "workers.default[0]", "key": "K0"}
    }
    assert "killed" in (parse_qacct(QACCT) or "")
    assert parse_qacct("error: job id 99 not found") is None
    assert parse_qstat_xml("") == []


def test_sge_qsub_message() -> None:
    assert message(
        "Unable to run job: Job was rejected because job requests unknown queue "
        '"nosuch.q".\nExiting.\n'
    ) == ('Job was rejected because job requests unknown queue "nosuch.q".')


# -- PBS, LSF, HTCondor (documented formats; not run against a real system) -----------

PBS_JSON = json.dumps(
    {
        "timestamp": 1764600000,
        "pbs_version": "2022.1.1",
        "pbs_server": "pbs-server",
        "Jobs": {
            "1234.pbs-server": {
                "Job_Name": "scalable-0123abcd-default-0",
                "Job_Owner": "u@login1",
                "job_state": "R",
                "queue": "workq",
                "exec_host": "node7/0*4",
                "Variable_List": {
                    "PBS_O_HOME": "/home/u",
                    "SCALABLE_LINEAGE": LINEAGE,
                    "SCALABLE_ADDRESS": "workers.default[0]",
                    "SCALABLE_KEY": "0123abcd-k-1",
                },
            },
            "1235.pbs-server": {
                "Job_Name": "scalable-0123abcd-default-1",
                "job_state": "Q",
                "queue": "workq",
                "comment": "Not Running: User has reached queue workq running job limit.",
                "Variable_List": {"PBS_O_HOME": "/home/u"},
            },
            "1200.pbs-server": {"Job_Name": "old", "job_state": "F", "queue": "workq"},
        },
    }
)

BJOBS_JSON = json.dumps(
    {
        "COMMAND": "bjobs",
        "JOBS": 2,
        "RECORDS": [
            {
                "JOBID": "5678",
                "STAT": "RUN",
                "JOB_NAME": "scalable-0123abcd-default-0",
                "EXEC_HOST": "4*hostA",
                "PEND_REASON": "",
                "JOB_DESCRIPTION": f"scalable;lineage={LINEAGE};address=workers.default[0];"
                "key=0123abcd-k-1",
            },
            {
                "JOBID": "5679",
                "STAT": "PEND",
                "JOB_NAME": "scalable-0123abcd-default-1",
                "EXEC_HOST": "",
                "PEND_REASON": "The user has reached his/her job slot limit;",
                "JOB_DESCRIPTION": "",
            },
            {
                "JOBID": "5600",
                "STAT": "EXIT",
                "JOB_NAME": "x",
                "EXEC_HOST": "hostB",
                "PEND_REASON": "",
                "JOB_DESCRIPTION": "",
            },
        ],
    }
)

CONDOR_Q_JSON = json.dumps(
    [
        {
            "ClusterId": 91,
            "ProcId": 0,
            "JobStatus": 2,
            "JobBatchName": "scalable-0123abcd-default-0",
            "RemoteHost": "slot1@exec-3.example.org",
            "ScalableLineage": LINEAGE,
            "ScalableAddress": "workers.default[0]",
            "ScalableKey": "0123abcd-k-1",
        },
        {
            "ClusterId": 92,
            "ProcId": 0,
            "JobStatus": 5,
            "JobBatchName": "x",
            "HoldReason": "Error from slot1@exec-1: Failed to execute '/bin/sh'",
        },
        {"ClusterId": 93, "ProcId": 0, "JobStatus": 1, "JobBatchName": "y"},
    ]
)


def test_pbs_parser() -> None:
    jobs = {j.id: j for j in parse_qstat_json(PBS_JSON)}
    assert jobs["1234.pbs-server"].phase == "alive" and jobs["1234.pbs-server"].nodes == "node7"
    assert jobs["1234.pbs-server"].identity == {
        "lineage": LINEAGE,
        "address": "workers.default[0]",
        "key": "0123abcd-k-1",
    }
    pending = jobs["1235.pbs-server"]
    assert pending.phase == "pending" and "running job limit" in pending.reason
    assert jobs["1200.pbs-server"].phase == "gone" and not jobs["1200.pbs-server"].active


def test_lsf_parser() -> None:
    jobs = {j.id: j for j in parse_bjobs_json(BJOBS_JSON)}
    assert jobs["5678"].phase == "alive" and jobs["5678"].identity is not None
    assert jobs["5678"].identity["address"] == "workers.default[0]"
    assert jobs["5679"].phase == "pending"
    assert jobs["5679"].reason == "The user has reached his/her job slot limit"
    assert jobs["5600"].phase == "gone"


def test_htcondor_parser() -> None:
    jobs = {j.id: j for j in parse_condor_q_json(CONDOR_Q_JSON)}
    assert jobs["91.0"].phase == "alive" and jobs["91.0"].nodes == "exec-3.example.org"
    assert jobs["91.0"].identity is not None and jobs["91.0"].identity["key"] == "0123abcd-k-1"
    assert jobs["92.0"].state == "Held" and "Failed to execute" in jobs["92.0"].reason
    assert jobs["93.0"].phase == "pending"


# -- shared machinery -----------------------------------------------------------------


def test_lifetime_retires_before_the_walltime() -> None:
    assert lifetime(3600, 300) == (3300, 75)
    assert lifetime(60, 300) == (45, 3.75)  # margin capped at a quarter of the walltime


def test_caps_keep_every_group_served() -> None:
    a = GroupSpec(
        name="a", tags=(), count=5, adaptive=None, threads_per_worker=1, memory_per_worker=None
    )
    b = GroupSpec(
        name="b", tags=(), count=2, adaptive=None, threads_per_worker=1, memory_per_worker=None
    )
    wanted = [(a, i, 1) for i in range(5)] + [(b, i, 1) for i in range(2)]
    kept, waiting = capped_jobs(wanted, 4, ["a", "b"])
    assert [(g.name, i) for g, i, _ in kept] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert waiting == 3
    assert capped_jobs(wanted, None, ["a", "b"]) == (wanted, 0)


def test_slurm_rows_as_batch_jobs() -> None:
    from scalable.providers.slurm import commands as slurm
    from scalable.providers.slurm import script as scripts
    from scalable.providers.slurm.system import SlurmSystem

    comment = scripts.array_comment(LINEAGE, "default", {0: "k0", 3: "k3"})
    row = slurm.SEP.join(
        [
            "20",
            "scalable-0123abcd-workers-default",
            "PENDING",
            "JobArrayTaskLimit",
            "N/A",
            "batch",
            "",
            "5:00",
            "",
            "20",
            "3",
            comment,
        ]
    )
    (job,) = SlurmSystem().parse_status(row)
    assert (job.id, job.phase, job.reason) == ("20_3", "pending", "JobArrayTaskLimit")
    assert job.identity == {"lineage": LINEAGE, "address": "workers.default[3]", "key": "k3"}
    assert SlurmSystem().label == "Slurm" and SlurmSystem().job_type == "slurm.job"


# -- the scripts are dask-jobqueue's, without importing it on apply's path ---------------
# Each system's render writes its dask-jobqueue job class's text itself (importing
# dask_jobqueue costs ~0.9 s of distributed + numpy before the first submit). The oracle
# is render's earlier implementation, kept here: the job class built with every key given.


def _jobqueue_script(job_class: Any, req: JobRequest, job_id_var: str, *,
                     command: str | None = None, **kwargs: Any) -> str:
    import warnings

    from scalable.providers.batch.system import script_prologue, shell_join

    class _Job(job_class):
        def __init__(self, command: str, **kw: object) -> None:
            super().__init__(**kw)
            self._command_template = command

    base: dict[str, Any] = {
        "scheduler": "(set by scalable)", "name": req.name, "cores": req.cores,
        "memory": f"{req.memory or 2**30}B", "processes": 1,
        "job_script_prologue": script_prologue(req, job_id_var),
        "log_directory": req.log_directory, "shebang": "#!/usr/bin/env bash",
        "python": req.python, "job_name": req.name, "interface": None, "death_timeout": None,
        "local_directory": None, "worker_extra_args": [], "env_extra": None,
        "job_extra": None, "header_skip": None, "extra": None,
    }
    base.update(kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        job = _Job(command=command or shell_join(req.command), **base)
    text: str = job.job_script()
    return text


def _oracle_sge(req: JobRequest) -> str:
    from dask_jobqueue.sge import SGEJob
    from scalable.providers.batch.system import hms

    extra = ["-S /bin/bash", *SgeSystem().identity_directives(req.identity)]
    if req.cores > 1 and req.parallel_environment:
        extra.append(f"-pe {req.parallel_environment} {req.cores}")
    extra += list(req.extra_directives)
    skip = [] if req.queue else ["#$ -q "]
    if not req.account:
        skip.append("#$ -P ")
    return _jobqueue_script(SGEJob, req, "JOB_ID", queue=req.queue, project=req.account,
                            resource_spec=req.resource_spec, walltime=hms(req.walltime),
                            job_extra_directives=extra, job_directives_skip=skip)


def _oracle_pbs(req: JobRequest) -> str:
    from dask_jobqueue.pbs import PBSJob
    from scalable.providers.batch.system import hms

    skip = [] if req.queue else ["#PBS -q "]
    if not req.account:
        skip.append("#PBS -A ")
    return _jobqueue_script(
        PBSJob, req, "PBS_JOBID", queue=req.queue, account=req.account,
        resource_spec=req.resource_spec, walltime=hms(req.walltime), job_directives_skip=skip,
        job_extra_directives=[*PbsSystem().identity_directives(req.identity),
                              *req.extra_directives])


def _oracle_lsf(req: JobRequest) -> str:
    from dask_jobqueue.lsf import LSFJob

    minutes = max(1, -(-req.walltime // 60))
    skip = [] if req.queue else ["#BSUB -q "]
    if not req.account:
        skip.append("#BSUB -P ")
    if not req.memory:
        skip.append("#BSUB -M ")
    return _jobqueue_script(
        LSFJob, req, "LSB_JOBID", queue=req.queue, project=req.account, ncpus=req.cores,
        mem=req.memory or 2**30, walltime=f"{minutes // 60:02d}:{minutes % 60:02d}",
        lsf_units="mb", use_stdin=True, job_directives_skip=skip,
        job_extra_directives=[*LsfSystem().identity_directives(req.identity),
                              *req.extra_directives])


def _oracle_htcondor(req: JobRequest) -> str:
    from dask_jobqueue.htcondor import HTCondorJob
    from scalable.providers.base import ProviderError
    from scalable.providers.batch.htcondor import ATTRS, _prologue
    from scalable.providers.batch.system import shell_join

    extra: dict[str, str] = {f"MY.{ATTRS[k]}": f'"{v}"' for k, v in req.identity.items()}
    extra["batch_name"] = req.name
    extra["periodic_remove"] = (
        f"JobStatus == 2 && (time() - EnteredCurrentStatus) > {int(req.walltime)}")
    for d in req.extra_directives:
        k, _, v = d.partition("=")
        extra[k.strip()] = v.strip()
    command = "; ".join([*_prologue(req), shell_join(req.command)])
    if "$(" in command.replace("$(ClusterId)", ""):
        raise ProviderError("submit macro")
    return _jobqueue_script(HTCondorJob, req, "_CONDOR_JOB_AD", command=command,
                            disk=f"{req.disk or 2**30}B", job_extra_directives=extra,
                            job_script_prologue=[],
                            shebang="# HTCondor submit description (scalable)")


_ORACLES = {"sge": _oracle_sge, "pbs": _oracle_pbs, "lsf": _oracle_lsf,
            "htcondor": _oracle_htcondor}
_EXTRA = {  # realistic extra directives, per system (HTCondor's override its own keys too)
    "sge": ["-l gpu=1", "-w e", "-V", "-l h_vmem=4G", "-R y"],
    "pbs": ["-l place=scatter", "-W group_list=hpc", "-V", "-m n"],
    "lsf": ['-R "rusage[mem=4000]"', "-x", '-gpu "num=1"', "-app dask"],
    "htcondor": ["request_gpus = 1", "RequestMemory = 4096", '+AccountingGroup = "g.u"',
                 "batch_name = mine", "requirements = (OpSys == \"LINUX\")", "Stream_Error=False"],
}
_lower = "abcdefghijklmnopqrstuvwxyz"
_name = st.text(_lower + "0123456789-_", min_size=1, max_size=30)
_queue = st.none() | st.just("") | st.text(_lower + "0123456789_.-@*", min_size=1,
                                             max_size=16)
_account = st.none() | st.just("") | st.text(_lower + "ABCDEFGHIJ0123456789_-.",
                                               min_size=1, max_size=16)
_spec = st.none() | st.sampled_from(["h_vmem=8G", "select=2:ncpus=8:mem=16gb", "gpu=1",
                                     "mem_free=2G,h_vmem=2G", "nodes=1:ppn=4"])


@pytest.mark.parametrize("system", [SgeSystem(), PbsSystem(), LsfSystem(), HtcondorSystem()],
                         ids=lambda s: s.name)
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), name=_name, queue=_queue, account=_account, resource_spec=_spec,
       walltime=st.integers(1, 10 * 86400), cores=st.integers(1, 128),
       memory=st.none() | st.integers(1, 2**45), disk=st.none() | st.integers(1, 2**45),
       pe=st.none() | st.sampled_from(["smp", "mpi"]), logs=st.text(_lower + "-_.", max_size=10),
       prologue=st.lists(st.sampled_from(["module load python", "", "source env.sh",
                                          "cd /scratch/u"]), max_size=3),
       env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                           st.text(max_size=20), max_size=3),
       command=st.lists(st.text(min_size=1, max_size=15), min_size=1, max_size=6))
def test_render_writes_exactly_what_dask_jobqueue_writes(
        tmp_path: Path, system: BatchSystem, data: st.DataObject, name: str,
        queue: str | None, account: str | None, resource_spec: str | None, walltime: int,
        cores: int, memory: int | None, disk: int | None, pe: str | None, logs: str,
        prologue: list[str], env: dict[str, str], command: list[str]) -> None:
    from scalable.providers.base import ProviderError

    extra = data.draw(st.lists(st.sampled_from(_EXTRA[system.name]), max_size=3))
    req = JobRequest(
        name=f"scalable-{name}",
        identity={"lineage": LINEAGE, "address": f"workers.{name}[0]", "key": f"k-{name}"},
        queue=queue, account=account, walltime=walltime, cores=cores, memory=memory,
        log_directory=str(tmp_path / "scalable" / logs), command=command,
        extra_directives=extra, prologue=prologue, env=env, python="/opt/py/bin/python3",
        resource_spec=resource_spec, parallel_environment=pe, disk=disk)
    try:
        expected = _ORACLES[system.name](req)
    except ProviderError:  # HTCondor refuses a $( in the command line: so must render
        with pytest.raises(ProviderError, match="submit macro"):
            system.render(req)
        return
    assert system.render(req) == expected


def test_rendering_job_scripts_imports_neither_dask_jobqueue_nor_distributed() -> None:
    code = (
        "import sys\n"
        "from scalable.providers.batch.htcondor import HtcondorSystem\n"
        "from scalable.providers.batch.lsf import LsfSystem\n"
        "from scalable.providers.batch.pbs import PbsSystem\n"
        "from scalable.providers.batch.sge import SgeSystem\n"
        "from scalable.providers.batch.system import JobRequest\n"
        "req = JobRequest(name='j', identity={'lineage': 'l', 'address': 'a', 'key': 'k'},"
        " queue='q', account=None, walltime=60, cores=2, memory=None,"
        " log_directory='/nonexistent/logs', command=['true'])\n"
        "texts = [s.render(req) for s in (SgeSystem(), PbsSystem(), LsfSystem(),"
        " HtcondorSystem())]\n"
        "from scalable.providers.slurm import script as slurm\n"
        "texts.append(slurm.render(slurm.JobShape(job_name='j', comment='c', wckey='w',"
        " partition='p', account=None, walltime=60, cores=1, memory=None,"
        " log_directory='/nonexistent/logs', worker_command=['true'])))\n"
        "assert all(texts)\n"
        "print(sorted(m for m in ('dask_jobqueue', 'distributed', 'numpy')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@given(st.lists(st.text(max_size=12), max_size=5))
def test_htcondor_argument_quoting_is_dask_jobqueues(args: list[str]) -> None:
    from dask_jobqueue.htcondor import quote_arguments as theirs
    from scalable.providers.batch.htcondor import quote_arguments

    assert quote_arguments(args) == theirs(args)

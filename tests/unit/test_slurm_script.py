"""Slurm provider, without a Slurm: job scripts, identity, parsing and state mapping."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import dask
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scalable.manifest.loader import load_manifest
from scalable.providers.slurm import SlurmProvider
from scalable.providers.slurm import commands as slurm
from scalable.providers.slurm import script as scripts
from scalable.providers.slurm.provider import JOB, observation_of
from scalable.spec import build_target
from scalable.state.model import ResourceRecord

LINEAGE = "0123abcd-4567-89ef-0123-456789abcdef"


def provider(tmp_path: Path, body: str) -> SlurmProvider:
    path = tmp_path / "scalable.yaml"
    path.write_text("targets:\n  hpc:\n    provider: slurm\n" + textwrap.indent(
        textwrap.dedent(body).strip() + "\n", "    "))
    spec = build_target(load_manifest(path), "hpc")
    return SlurmProvider(spec, spec.workdir)


def job(tmp_path: Path, body: str, address: str = "workers.default[0]"
        ) -> tuple[SlurmProvider, str]:
    p = provider(tmp_path, body)
    res = next(r for r in p.desired() if r.address == address)
    text = p.job_script(res, lineage=LINEAGE, key="0123abcd-workers.default[0]-feedbeef",
                        scheduler_address="tls://10.1.2.3:8786")
    assert text is not None
    return p, text


def directives(text: str) -> list[str]:
    return [ln[len("#SBATCH "):] for ln in text.splitlines() if ln.startswith("#SBATCH ")]


# -- identity ---------------------------------------------------------------------------


def test_identity_round_trips_and_ignores_other_comments() -> None:
    c = scripts.comment(LINEAGE, "workers.gpu-a[12]", "key-1")
    assert scripts.parse_comment(c) == {"lineage": LINEAGE, "address": "workers.gpu-a[12]",
                                        "key": "key-1"}
    assert scripts.job_name(LINEAGE, "workers.gpu-a[12]") == "scalable-0123abcd-gpu-a-12"
    assert scripts.wckey(LINEAGE) == "scalable-0123abcd"
    for other in ("", "(null)", "my analysis; lineage=x", "scalable;lineage=x;address=y"):
        assert scripts.parse_comment(other) is None


def test_lifetime_leaves_a_margin_and_the_stagger_stays_inside_the_walltime() -> None:
    assert scripts.lifetime(3600, 300) == (3300, 75)
    life, stagger = scripts.lifetime(60, 300)  # short jobs: margin capped at a quarter
    assert (life, stagger) == (45, 3.75)
    for walltime in (60, 120, 600, 3600, 86400):
        life, stagger = scripts.lifetime(walltime, 300)
        assert life - stagger > 0 and life + stagger < walltime


# -- scripts ----------------------------------------------------------------------------


def test_script_has_the_manifests_sbatch_lines(tmp_path: Path) -> None:
    p, text = job(tmp_path, """
        queue: batch
        account: climate
        walltime: "02:00:00"
        cores: 8
        memory: 16GiB
        processes: 4
        threads_per_worker: 2
        max_workers: 4
        job_extra_directives: ["--constraint=haswell", "--exclusive"]
        job_script_prologue: ["module load python/3.11"]
        env: {OMP_NUM_THREADS: "1"}
    """)
    d = directives(text)
    assert d[0] == "-J scalable-0123abcd-default-0"
    for line in ("-p batch", "-A climate", "-n 1", "--cpus-per-task=8", "--mem=16384M",
                 "-t 02:00:00", "--constraint=haswell", "--exclusive",
                 f"--comment=scalable;lineage={LINEAGE};address=workers.default[0];"
                 "key=0123abcd-workers.default[0]-feedbeef",
                 "--wckey=scalable-0123abcd"):
        assert line in d, line
    assert f"-o {p.workdir}/logs/scalable-0123abcd-default-0-%J.out" in d
    body = text.splitlines()
    assert body[0] == "#!/usr/bin/env bash"
    # Prologue before the worker, in the user's order, then our environment.
    i_module = body.index("module load python/3.11")
    i_env = body.index("export OMP_NUM_THREADS=1")
    worker = body[-1]
    assert i_module < i_env < len(body) - 1
    assert worker.split()[1:4] == ["-m", "distributed.cli.dask_worker", "tls://10.1.2.3:8786"]
    for flag in ("--nworkers 4", "--nthreads 2", "--memory-limit 4294967296",
                 "--lifetime 6900s", "--lifetime-stagger 75s", "--death-timeout 60s",
                 "--tls-ca-file", '--local-directory "${TMPDIR:-/tmp}/scalable-${SLURM_JOB_ID}"'):
        assert flag in worker, flag


def test_script_is_valid_bash(tmp_path: Path) -> None:
    _, text = job(tmp_path, "queue: batch\nmax_workers: 1\n")
    path = tmp_path / "job.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_unset_keys_are_not_filled_from_a_users_jobqueue_config(tmp_path: Path) -> None:
    with dask.config.set({"jobqueue.slurm.queue": "secret", "jobqueue.slurm.account": "acct",
                          "jobqueue.slurm.job-extra-directives": ["--qos=high"]}):
        _, text = job(tmp_path, "max_workers: 1\n")
    d = directives(text)
    assert not [x for x in d if x.startswith(("-p ", "-A ", "--mem="))], d
    assert "--qos=high" not in d


def test_remainder_job_is_smaller(tmp_path: Path) -> None:
    p = provider(tmp_path, "processes: 2\nmax_workers: 3\ncores: 4\nmemory: 8GiB\n"
                           "walltime: 90\n")
    jobs = [r for r in p.desired() if r.type == JOB]
    assert [r.address for r in jobs] == ["workers.default[0]", "workers.default[1]"]
    assert [r.attributes["workers"] for r in jobs] == [2, 1]
    assert [r.attributes["cores"] for r in jobs] == [4, 2]
    assert [r.attributes["memory"] for r in jobs] == ["8GiB", "4GiB"]
    assert jobs[0].worker_names == ("workers.default[0]-0", "workers.default[0]-1")
    assert jobs[1].worker_names == ("workers.default[1]",)
    assert jobs[0].attributes["core_hours"] == 6.0  # 4 cores × 1.5 h


def test_apptainer_wraps_the_worker_command(tmp_path: Path) -> None:
    p, text = job(tmp_path, """
        max_workers: 1
        containers: apptainer
        image: docker://ghcr.io/dask/dask:2026.8.0
    """)
    worker = text.splitlines()[-1]
    assert worker.startswith(f"apptainer exec --bind {p.workdir} "
                             "docker://ghcr.io/dask/dask:2026.8.0 "
                             "python3 -m distributed.cli.dask_worker ")


def test_python_key_overrides_the_interpreter(tmp_path: Path) -> None:
    _, text = job(tmp_path, "max_workers: 1\npython: /opt/env/bin/python\n")
    assert text.splitlines()[-1].startswith("/opt/env/bin/python -m distributed.cli.dask_worker")


def test_missing_interface_falls_back_to_loopback_and_says_so(tmp_path: Path) -> None:
    p = provider(tmp_path, "max_workers: 1\ninterface: nosuch0\n")
    host, warning = p.scheduler_host()
    assert host == "127.0.0.1"
    assert warning and "nosuch0" in warning
    p = provider(tmp_path, "max_workers: 1\ninterface: lo\n")
    assert p.scheduler_host() == ("127.0.0.1", None)


# -- cost -------------------------------------------------------------------------------


def test_price_is_core_hours_times_the_rate(tmp_path: Path) -> None:
    p = provider(tmp_path, "max_workers: 2\ncores: 4\nwalltime: '02:00:00'\n")
    res = [r for r in p.desired() if r.type == JOB][0]
    free = p.price(res)
    assert free.hourly == 0.0 and free.cores == 4 and "no rate set" in free.note
    assert p.horizon_hours() == 2.0
    p = provider(tmp_path, "max_workers: 2\ncores: 4\npricing: {core_hour_usd: 0.05}\n")
    priced = p.price([r for r in p.desired() if r.type == JOB][0])
    assert priced.hourly == pytest.approx(0.2) and priced.cores == 4


# -- parsing ----------------------------------------------------------------------------


def row(*vals: str) -> str:
    return slurm.SEP.join(vals)


def test_parse_squeue_keeps_separators_in_comments() -> None:
    text = "\n".join([
        row("12", "scalable-0123abcd-default-0", "PENDING", "Resources", "2026-11-30T10:00:00",
            "batch", "", "1:00:00", "scalable-0123abcd", "12", "N/A",
            f"scalable;lineage={LINEAGE};address=workers.default[0];key=k"),
        row("13", "other", "CANCELLED by 0", "None", "N/A", "debug", "vm", "30:00", "(null)",
            "13", "N/A", "a" + slurm.SEP + "b"),
        # squeue -r: a pending array task keeps the array's id, a started one has its own.
        row("20", "arr", "PENDING", "JobArrayTaskLimit", "N/A", "batch", "", "5:00", "",
            "20", "3", "c"),
        row("22", "arr", "RUNNING", "None", "N/A", "batch", "vm", "5:00", "", "20", "1", "c"),
        "garbage line",
    ])
    jobs = slurm.parse_squeue(text)
    assert [j.id for j in jobs] == ["12", "13", "20_3", "20_1"]
    assert jobs[2].array_task == 3 and jobs[2].reason == "JobArrayTaskLimit"
    assert jobs[0].array_task is None
    assert jobs[0].active and jobs[0].reason == "Resources"
    assert jobs[1].state == "CANCELLED" and not jobs[1].active
    assert jobs[1].comment == "a" + slurm.SEP + "b"


def test_parse_sinfo_and_time_limits() -> None:
    parts = slurm.parse_sinfo(row("debug*", "30:00", "up", "8") + "\n"
                              + row("batch", "1-00:00:00", "up", "8") + "\n"
                              + row("long", "UNLIMITED", "up", "64+"))
    assert parts["debug"].default and parts["debug"].max_time == 1800
    assert parts["batch"].max_time == 86400 and not parts["batch"].default
    assert parts["long"].max_time is None and parts["long"].cpus == 64
    assert slurm.parse_time_limit("2-12") == 2 * 86400 + 12 * 3600
    assert slurm.parse_time_limit("5") == 300
    assert slurm.parse_time_limit("1:30") == 90


def test_slurm_message_keeps_the_specific_reason() -> None:
    msg = slurm.slurm_message("sbatch: error: invalid partition specified: nosuch\n"
                              "sbatch: error: Batch job submission failed: Invalid partition "
                              "name specified\n")
    assert msg == ("invalid partition specified: nosuch (Batch job submission failed: "
                   "Invalid partition name specified)")


# -- state mapping ----------------------------------------------------------------------


def sjob(state: str, reason: str = "None", start: str = "N/A", jid: str = "7",
         name: str = "scalable-0123abcd-default-0") -> slurm.Job:
    return slurm.Job(id=jid, name=name, state=state, reason=reason, start=start,
                     partition="batch", nodes="vm", time_limit="1:00", wckey="", comment="")


@pytest.mark.parametrize(
    ("state", "reason", "status", "words"),
    [
        ("PENDING", "Resources", "pending", "PENDING (Resources), expected start 2026-12-01T09:00"),
        ("PENDING", "Priority", "pending", "(Priority)"),
        # Site limits (accounting on: QOS / association): pending, in Slurm's words.
        ("PENDING", "QOSMaxJobsPerUserLimit", "pending", "PENDING (QOSMaxJobsPerUserLimit)"),
        ("PENDING", "AssocMaxJobsLimit", "pending", "PENDING (AssocMaxJobsLimit)"),
        ("PENDING", "JobArrayTaskLimit", "pending", "PENDING (JobArrayTaskLimit)"),
        ("PENDING", "PartitionNodeLimit", "pending", "PENDING (PartitionNodeLimit)"),
        ("CONFIGURING", "None", "pending", "CONFIGURING"),
        ("RUNNING", "None", "alive", "RUNNING on vm"),
        ("TIMEOUT", "None", "gone", "TIMEOUT: walltime reached"),
        ("CANCELLED", "None", "gone", "CANCELLED"),
        ("FAILED", "NonZeroExitCode", "gone", "FAILED: the job script failed (NonZeroExitCode)"),
        ("NODE_FAIL", "None", "gone", "NODE_FAIL: its node failed"),
        ("COMPLETED", "None", "gone", "COMPLETED: its workers exited"),
        ("OUT_OF_MEMORY", "None", "gone", "OUT_OF_MEMORY"),
        ("COMPLETING", "None", "gone", "COMPLETING"),
    ],
)
def test_state_mapping(state: str, reason: str, status: str, words: str) -> None:
    start = "2026-12-01T09:00" if reason == "Resources" else "N/A"
    obs = observation_of(sjob(state, reason, start))
    assert obs.status == status
    assert words in obs.reason
    if start != "N/A":
        assert obs.details["expected_start"] == start


def test_refresh_checks_the_job_name_not_just_the_id(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    p = provider(tmp_path, "max_workers: 3\n")
    rows = [sjob("RUNNING", jid="1"), sjob("RUNNING", jid="2", name="someone-elses-job")]
    monkeypatch.setattr(p, "_jobs", lambda fresh=False: rows)

    def rec(addr: str, jid: str) -> ResourceRecord:
        return ResourceRecord(address=addr, type=JOB, status="ready", idempotency_key="k",
                              id=jid, meta={"job_id": jid,
                                            "job_name": "scalable-0123abcd-default-0"})

    obs = p.observe([rec("workers.default[0]", "1"), rec("workers.default[1]", "2"),
                     rec("workers.default[2]", "3")])
    assert obs["workers.default[0]"].status == "alive"
    assert obs["workers.default[1]"].status == "gone"
    assert "now belongs to another job" in obs["workers.default[1]"].reason
    assert obs["workers.default[2]"].status == "gone"
    assert "no longer listed" in obs["workers.default[2]"].reason


def test_no_slurm_on_path_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("sbatch") is None
    with pytest.raises(slurm.ProviderError, match="sbatch not found"):
        slurm.require_sbatch()
    with pytest.raises(slurm.ProviderError, match="squeue not found") as info:
        slurm.squeue()
    assert "login node" in (info.value.hint or "")


def test_a_scheduler_on_another_login_node_is_checked_over_the_network(tmp_path: Path) -> None:
    import socket

    p = provider(tmp_path, "max_workers: 1\n")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        rec = ResourceRecord(address="scheduler", type="local.process", status="ready",
                             idempotency_key="k", id="pid:1@1",
                             meta={"pid": 1, "start_time": 1, "host": "login2-not-here",
                                   "address": f"tls://127.0.0.1:{port}"})
        obs = p.observe([rec])["scheduler"]
        assert obs.status == "alive" and "login2-not-here" in obs.reason
    obs = p.observe([rec])["scheduler"]
    assert obs.status == "gone" and "does not answer" in obs.reason


def test_scheduler_job_script_binds_the_nodes_interface(tmp_path: Path) -> None:
    p = provider(tmp_path, """
        max_workers: 2
        walltime: 30
        groups:
          long: {max_workers: 1, walltime: "02:00:00"}
        interface: ib0
        scheduler: {placement: job}
    """)
    sched = p.desired()[0]
    assert sched.type == JOB and sched.attributes["walltime"] == "02:00:00"
    text = p.job_script(sched, lineage=LINEAGE, key="k")
    assert text is not None
    d = directives(text)
    assert "-J scalable-0123abcd-scheduler" in d and "-t 02:00:00" in d
    assert "SCALABLE_HOST=$(ip -4 -o addr show dev ib0 " in text
    cmd = text.splitlines()[-1]
    assert '-m distributed.cli.dask_scheduler --host "${SCALABLE_HOST}"' in cmd
    assert f"--scheduler-file {p.workdir}/scheduler.json" in cmd
    path = tmp_path / "sched.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    local = provider(tmp_path, "max_workers: 1\n")
    assert local.job_script(local.desired()[0]) is None  # a local process has no script


def test_show_scripts_on_the_local_provider_prints_each_worker_command(tmp_path: Path) -> None:
    import shlex

    from tests.conftest import Project

    proj = Project(tmp_path)
    proj.write("targets:\n  local:\n    provider: local\n    max_workers: 1\n")
    out = proj.run("plan", "--show-scripts")
    assert out.returncode == 0, out.stderr
    head, _, rest = out.stdout.partition("# ---- workers.default[0]: command ----\n")
    assert rest, out.stdout
    argv = shlex.split(rest.splitlines()[0])
    # Run with this interpreter, through quick_exit (no teardown when the worker ends).
    assert argv[1:5] == ["-m", "scalable.providers.quick_exit", "distributed.cli.dask_worker",
                         "<scheduler address>"]


def test_a_submit_limit_refusal_keeps_slurms_words() -> None:
    # sbatch's refusal at a site with MaxSubmitJobs on the association (recorded output).
    stderr = ("sbatch: error: AssocMaxSubmitJobLimit\n"
              "sbatch: error: Batch job submission failed: Job violates accounting/QOS "
              "policy (job submit limit, user's size and/or time limits)\n")
    msg = slurm.slurm_message(stderr)
    assert msg.startswith("AssocMaxSubmitJobLimit (Batch job submission failed: Job violates")


# -- the job script is dask-jobqueue's, without importing it on apply's path -------------

def _jobqueue_render(shape: scripts.JobShape) -> str:
    """The script as dask-jobqueue's SLURMJob builds it (render's earlier implementation,
    kept as the oracle: render writes the same text without importing dask_jobqueue)."""
    import warnings

    from dask_jobqueue.slurm import SLURMJob
    from scalable.providers.commands import export_lines
    from scalable.units import format_walltime

    class _Job(SLURMJob):
        def __init__(self, command: str, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self._command_template = command

    prologue = list(shape.prologue)
    prologue += export_lines(dict(sorted(shape.env.items())))
    prologue += [
        f'export SCALABLE_LOCAL_DIR="{scripts.LOCAL_DIR}"',
        'mkdir -p "$SCALABLE_LOCAL_DIR" && trap \'rm -rf "$SCALABLE_LOCAL_DIR"\' EXIT',
    ]
    directives = [f"--comment={shape.comment}", f"--wckey={shape.wckey}",
                  *shape.extra_directives]
    skip = []
    if shape.nodes > 1:
        skip.append("#SBATCH -n 1")
        directives = [f"--nodes={shape.nodes}", "--ntasks-per-node=1", *directives]
    if not shape.memory:
        skip.append("#SBATCH --mem=")
    if not shape.partition:
        skip.append("#SBATCH -p ")
    if not shape.account:
        skip.append("#SBATCH -A ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        job = _Job(
            command=scripts.shell_join(shape.worker_command), scheduler="(set by scalable)",
            name="(set by scalable)", queue=shape.partition, account=shape.account,
            walltime=format_walltime(shape.walltime), cores=shape.cores,
            memory=f"{shape.memory or 2**30}B", processes=1, job_cpu=shape.cores,
            job_mem=scripts.mem_directive(shape.memory) if shape.memory else None,
            job_extra_directives=directives, job_script_prologue=prologue,
            job_directives_skip=skip, log_directory=shape.log_directory,
            shebang="#!/usr/bin/env bash", python=shape.python, job_name=shape.job_name,
            interface=None, death_timeout=None, local_directory=None, worker_extra_args=[],
            env_extra=None, job_extra=None, header_skip=None, extra=None,
        )
    text: str = job.job_script()
    return text


_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    job_name=_word, partition=st.none() | _word, account=st.none() | _word,
    walltime=st.integers(1, 10 * 86400), cores=st.integers(1, 128),
    memory=st.none() | st.integers(1, 2**40), nodes=st.integers(1, 4),
    extra=st.lists(st.sampled_from(["--gres=gpu:2", "--exclusive", "--qos=long",
                                    "--constraint=skylake"]), max_size=3),
    prologue=st.lists(st.sampled_from(["module load python", "", "source env.sh"]),
                      max_size=3),
    env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
                        st.text(max_size=20), max_size=3),
    command=st.lists(st.text(min_size=1, max_size=15), min_size=1, max_size=6),
)
def test_render_writes_exactly_what_dask_jobqueue_writes(
        tmp_path: Path, job_name: str, partition: str | None, account: str | None,
        walltime: int, cores: int, memory: int | None, nodes: int, extra: list[str],
        prologue: list[str], env: dict[str, str], command: list[str]) -> None:
    shape = scripts.JobShape(
        job_name=job_name, comment="scalable:x", wckey="scalable", partition=partition,
        account=account, walltime=walltime, cores=cores, memory=memory,
        log_directory=str(tmp_path / "logs"), worker_command=command,
        extra_directives=extra, prologue=prologue, env=env, nodes=nodes)
    assert scripts.render(shape) == _jobqueue_render(shape)

"""Son of Grid Engine / Univa / Altair Grid Engine: ``qsub``, ``qstat -xml``, ``qdel``.

Run here against a real SGE 8.1.9 (``scripts/sge-dev.sh``). Identity: the job name
(``-N``) plus job context variables (``-ac scalable_lineage=…,scalable_address=…,
scalable_key=…``), read back with ``qstat -j``. Finished jobs leave ``qstat`` at once;
``qacct -j`` says how they ended once the accounting file is flushed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalable.providers.base import ProviderError
from scalable.providers.batch.system import (
    BatchJob,
    BatchSystem,
    JobRequest,
    Phase,
    hms,
    job_script_text,
)

CONTEXT_PREFIX = "scalable_"
STATE_WORDS = {
    "qw": "waiting in the queue",
    "hqw": "on hold",
    "Eqw": "in error state (`qstat -j ID` says why)",
    "r": "running",
    "t": "being transferred to its host",
    "Rr": "restarted",
    "s": "suspended",
    "S": "suspended by its queue",
    "T": "suspended (threshold)",
    "dr": "being deleted",
    "dt": "being deleted",
}


def phase_of(state: str) -> Phase:
    if "E" in state:
        return "gone"  # never runs until an admin clears it: replace it
    if "d" in state:
        return "ending"
    if state in ("r", "t", "Rr", "Rt"):
        return "alive"
    return "pending"  # qw, hqw, s, S, T…


def parse_qstat_xml(text: str) -> list[BatchJob]:
    """Jobs from ``qstat -xml`` (running ones under queue_info, pending under job_info)."""
    if not text.strip():
        return []
    root = ET.fromstring(text)
    out: list[BatchJob] = []
    seen: set[str] = set()
    for jl in root.iter("job_list"):
        job_id = (jl.findtext("JB_job_number") or "").strip()
        task = (jl.findtext("tasks") or "").strip()
        if not job_id:
            continue
        full = f"{job_id}.{task}" if task and task.isdigit() else job_id
        if full in seen:
            continue
        seen.add(full)
        state = (jl.findtext("state") or "").strip()
        queue = (jl.findtext("queue_name") or "").strip()
        out.append(
            BatchJob(
                id=full,
                name=(jl.findtext("JB_name") or "").strip(),
                state=state,
                phase=phase_of(state),
                reason=STATE_WORDS.get(state, ""),
                nodes=queue.partition("@")[2],
                stuck="E" in state,
            )
        )
    return out


def parse_qstat_j(text: str) -> dict[str, dict[str, str]]:
    """``job_number`` → our identity fields, from ``qstat -j ID,ID…``'s ``context:``."""
    out: dict[str, dict[str, str]] = {}
    job_id = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "job_number":
            job_id = value
        elif key == "context" and job_id:
            fields: dict[str, str] = {}
            for item in value.split(","):
                k, eq, v = item.partition("=")
                if eq and k.startswith(CONTEXT_PREFIX):
                    fields[k[len(CONTEXT_PREFIX) :]] = v
            if {"lineage", "address", "key"} <= set(fields):
                out[job_id] = fields
    return out


def parse_qacct(text: str) -> str | None:
    """How a finished job ended, from ``qacct -j ID``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            fields.setdefault(parts[0], parts[1].strip())
    if "exit_status" not in fields:
        return None
    status = fields["exit_status"].split()[0]
    failed = fields.get("failed", "0")
    if status == "137" or "h_rt" in failed or failed.startswith("100"):
        words = "killed (walltime h_rt reached, or qdel)"
    elif status == "0":
        words = "its workers exited (lifetime reached or scheduler gone)"
    else:
        words = f"exit status {status}"
    if failed and not failed.startswith("0"):
        words += f"; failed {failed}"
    return words


class SgeSystem(BatchSystem):
    name = "sge"
    label = "SGE"
    job_type = "sge.job"
    submit_prog = "qsub"
    status_prog = "qstat"
    cancel_prog = "qdel"
    verified = True
    install_hint = (
        "run scalable where the SGE client commands are (a submit host, with "
        "SGE_ROOT set); for a local development SGE: sudo scripts/sge-dev.sh up"
    )

    def __init__(self) -> None:
        # A job's context never changes: one `qstat -j` per job id, ever.
        self._identity: dict[str, dict[str, str] | None] = {}

    def identity_directives(self, identity: Mapping[str, str]) -> list[str]:
        ctx = ",".join(f"{CONTEXT_PREFIX}{k}={v}" for k, v in identity.items())
        return [f"-ac {ctx}"]

    def render(self, req: JobRequest) -> str:
        """dask-jobqueue's SGEJob header and template, with our identity and worker."""
        extra = ["-S /bin/bash", *self.identity_directives(req.identity)]
        if req.cores > 1 and req.parallel_environment:
            extra.append(f"-pe {req.parallel_environment} {req.cores}")
        extra += list(req.extra_directives)
        skip = [] if req.queue else ["#$ -q "]
        if not req.account:
            skip.append("#$ -P ")
        header = [f"#$ -N {req.name}"]
        if req.queue is not None:
            header.append(f"#$ -q {req.queue}")
        if req.account is not None:
            header.append(f"#$ -P {req.account}")
        if req.resource_spec is not None:
            header.append(f"#$ -l {req.resource_spec}")
        header += [
            f"#$ -l h_rt={hms(req.walltime)}",
            f"#$ -e {req.log_directory}/",
            f"#$ -o {req.log_directory}/",
            "#$ -cwd",
            "#$ -j y",
        ]
        return job_script_text(
            req, "JOB_ID", header=header, directive="#$", skip=skip, extra=extra
        )

    def submit_argv(self, script: Path) -> list[str]:
        return ["qsub", "-terse", str(script)]

    def parse_submit(self, out: str) -> str:
        # -terse prints the id ("12", or "12.1-4:1" for an array).
        line = out.strip().splitlines()[-1] if out.strip() else ""
        job_id = line.split(".")[0]
        if not job_id.isdigit():
            raise ProviderError(f"qsub returned no job id (output: {out.strip()[:200]!r})")
        return job_id

    def status_argv(self) -> list[str]:
        return ["qstat", "-xml", "-u", self.user()]

    def parse_status(self, text: str) -> list[BatchJob]:
        return parse_qstat_xml(text)

    def list_jobs(self) -> list[BatchJob]:
        jobs = self.parse_status(self.run(self.status_argv()))
        ask = [j.id for j in jobs if j.name.startswith("scalable-") and j.id not in self._identity]
        if ask:
            try:
                found = parse_qstat_j(self.run(["qstat", "-j", ",".join(ask)]))
            except ProviderError:
                found = {}  # a job ended between the two calls
            for i in ask:
                self._identity[i] = found.get(i)
        return [BatchJob(**{**j.__dict__, "identity": self._identity.get(j.id)}) for j in jobs]

    def preflight(self, queues: Sequence[str]) -> None:
        if not queues:
            return
        known = set(self.run(["qconf", "-sql"], timeout=30.0).split())
        for q in queues:
            # A queue request may name a queue instance (all.q@host) or a wildcard.
            name = q.partition("@")[0]
            if "*" not in name and name not in known:
                raise ProviderError(
                    f"SGE has no queue {q!r} (queues: {', '.join(sorted(known))})",
                    hint="check `queue:` against `qconf -sql`",
                )

    def cancel_argv(self, ids: Sequence[str]) -> list[str]:
        return ["qdel", *ids]

    def ended(self, job_id: str) -> str | None:
        try:
            return parse_qacct(self.run(["qacct", "-j", job_id], timeout=30.0))
        except ProviderError:
            return None

    def hint_for(self, text: str) -> str | None:
        low = text.lower()
        if "unable to contact qmaster" in low or "commlib error" in low:
            return "is sge_qmaster up? `qstat` tells; SGE_ROOT/SGE_CELL must point at the cell"
        if "queue" in low:
            return "check `queue:` against `qconf -sql`"
        if "project" in low:
            return "check `account:` (SGE project, -P) against `qconf -sprjl`"
        if re.search(r"parallel environment|\bpe\b", low):
            return "check `parallel_environment:` against `qconf -spl`"
        return None


def sge_system(**_: Any) -> SgeSystem:
    return SgeSystem()

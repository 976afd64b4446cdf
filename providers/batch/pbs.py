"""PBS Professional / OpenPBS (and Torque's ``qsub``/``qdel``): ``qstat -f -F json``.

NOT run against a real PBS here: the command lines and the parser are tested on outputs
in the format PBS documents (``tests/unit/test_batch_systems.py``). Identity: the job
name (``-N``) plus ``-v SCALABLE_LINEAGE=…,SCALABLE_ADDRESS=…,SCALABLE_KEY=…``, which
``qstat -f`` shows back in ``Variable_List``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from scalable.providers.base import ProviderError
from scalable.providers.batch.system import (
    BatchJob,
    BatchSystem,
    JobRequest,
    Phase,
    hms,
    job_script_text,
)

VAR_PREFIX = "SCALABLE_"
STATE_WORDS = {
    "Q": "queued",
    "H": "held",
    "W": "waiting for its start time",
    "T": "in transit",
    "R": "running",
    "B": "array running",
    "E": "exiting",
    "S": "suspended",
    "U": "suspended (workstation busy)",
    "F": "finished",
    "X": "subjob finished",
    "M": "moved to another server",
}


def phase_of(state: str) -> Phase:
    if state in ("R", "B"):
        return "alive"
    if state == "E":
        return "ending"
    if state in ("F", "X", "M"):
        return "gone"
    return "pending"


def parse_qstat_json(text: str) -> list[BatchJob]:
    """Jobs from ``qstat -f -F json`` (``-x`` adds finished ones)."""
    if not text.strip():
        return []
    data = json.loads(text)
    out = []
    for job_id, attrs in (data.get("Jobs") or {}).items():
        state = str(attrs.get("job_state", ""))
        variables = attrs.get("Variable_List") or {}
        if isinstance(variables, str):  # some versions print "A=1,B=2"
            variables = dict(v.split("=", 1) for v in variables.split(",") if "=" in v)
        ident = {
            k[len(VAR_PREFIX) :].lower(): str(v)
            for k, v in variables.items()
            if k in (f"{VAR_PREFIX}LINEAGE", f"{VAR_PREFIX}ADDRESS", f"{VAR_PREFIX}KEY")
        }
        reason = STATE_WORDS.get(state, "")
        if attrs.get("comment") and phase_of(state) != "alive":
            reason = f"{reason}: {attrs['comment']}" if reason else str(attrs["comment"])
        out.append(
            BatchJob(
                id=job_id,
                name=str(attrs.get("Job_Name", "")),
                state=state,
                phase=phase_of(state),
                reason=reason,
                nodes=str(attrs.get("exec_host", "")).split("/")[0],
                identity=ident if len(ident) == 3 else None,
            )
        )
    return out


def pbs_format_bytes_ceil(n: int) -> str:
    """Bytes as PBS reads them (its kB/MB/GB are binary), rounded up: dask-jobqueue's."""
    if n >= 10 * 2**30:
        return f"{-(-n // 2**30)}GB"
    if n >= 10 * 2**20:
        return f"{-(-n // 2**20)}MB"
    if n >= 10 * 2**10:
        return f"{-(-n // 2**10)}kB"
    return f"{n}B"


class PbsSystem(BatchSystem):
    name = "pbs"
    label = "PBS"
    job_type = "pbs.job"
    submit_prog = "qsub"
    status_prog = "qstat"
    cancel_prog = "qdel"
    verified = False
    install_hint = "run scalable where the PBS client commands are (a login node)"

    def identity_directives(self, identity: Mapping[str, str]) -> list[str]:
        return ["-v " + ",".join(f"{VAR_PREFIX}{k.upper()}={v}" for k, v in identity.items())]

    def render(self, req: JobRequest) -> str:
        """dask-jobqueue's PBSJob header and template, with our identity and worker."""
        skip = [] if req.queue else ["#PBS -q "]
        if not req.account:
            skip.append("#PBS -A ")
        header = [f"#PBS -N {req.name}"]
        if req.queue is not None:
            header.append(f"#PBS -q {req.queue}")
        if req.account is not None:
            header.append(f"#PBS -A {req.account}")
        resource_spec = req.resource_spec
        if resource_spec is None:  # PBSJob's default: one chunk of the job's cores and memory
            memory = pbs_format_bytes_ceil(req.memory or 2**30)
            resource_spec = f"select=1:ncpus={req.cores}:mem={memory}"
        header += [
            f"#PBS -l {resource_spec}",
            f"#PBS -l walltime={hms(req.walltime)}",
            f"#PBS -e {req.log_directory}/",
            f"#PBS -o {req.log_directory}/",
        ]
        return job_script_text(
            req,
            "PBS_JOBID",
            header=header,
            directive="#PBS",
            skip=skip,
            extra=[*self.identity_directives(req.identity), *req.extra_directives],
        )

    def submit_argv(self, script: Path) -> list[str]:
        return ["qsub", str(script)]

    def parse_submit(self, out: str) -> str:
        line = out.strip().splitlines()[-1].strip() if out.strip() else ""
        if not line or not line.split(".")[0].rstrip("[]").isdigit():
            raise ProviderError(f"qsub returned no job id (output: {out.strip()[:200]!r})")
        return line  # "1234.server": what qstat and qdel take

    def status_argv(self) -> list[str]:
        return ["qstat", "-f", "-F", "json", "-x", "-u", self.user()]

    def parse_status(self, text: str) -> list[BatchJob]:
        return parse_qstat_json(text)

    def already_gone(self, message: str) -> bool:
        low = message.lower()
        return "unknown job id" in low or "job has finished" in low or super().already_gone(message)

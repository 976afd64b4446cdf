"""IBM Spectrum LSF: ``bsub < script``, ``bjobs -o … -json``, ``bkill``.

NOT run against a real LSF here: the command lines and the parser are tested on outputs
in the format LSF documents (``tests/unit/test_batch_systems.py``). Identity: the job
name (``-J``) plus the job description (``-Jd "scalable;lineage=…;address=…;key=…"``),
which ``bjobs -o job_description`` shows back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from scalable.providers.base import ProviderError
from scalable.providers.batch.system import (
    BatchJob,
    BatchSystem,
    JobRequest,
    Phase,
    job_script_text,
)

FIELDS = "jobid stat job_name exec_host pend_reason job_description"
PREFIX = "scalable"


def phase_of(state: str) -> Phase:
    if state == "RUN":
        return "alive"
    if state in ("PEND", "PSUSP", "USUSP", "SSUSP", "WAIT", "PROV"):
        return "pending"
    return "gone"  # DONE, EXIT, UNKWN, ZOMBI


def description(identity: Mapping[str, str]) -> str:
    return ";".join([PREFIX, *(f"{k}={v}" for k, v in identity.items())])


def parse_description(text: str) -> dict[str, str] | None:
    parts = text.strip().split(";")
    if not parts or parts[0] != PREFIX:
        return None
    fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    return fields if {"lineage", "address", "key"} <= set(fields) else None


def parse_bjobs_json(text: str) -> list[BatchJob]:
    """Jobs from ``bjobs -a -o "<FIELDS>" -json``."""
    if not text.strip():
        return []
    out = []
    for rec in json.loads(text).get("RECORDS", []):
        state = str(rec.get("STAT", ""))
        reason = str(rec.get("PEND_REASON", "")).strip().rstrip(";")
        out.append(
            BatchJob(
                id=str(rec.get("JOBID", "")),
                name=str(rec.get("JOB_NAME", "")),
                state=state,
                phase=phase_of(state),
                reason=reason,
                nodes=str(rec.get("EXEC_HOST", "")).split(":")[0],
                identity=parse_description(str(rec.get("JOB_DESCRIPTION", ""))),
            )
        )
    return out


def lsf_megabytes(n: int) -> str:
    """Bytes in LSF's ``MB`` (10**6 bytes), rounded up (dask-jobqueue's
    ``lsf_format_bytes_ceil(n, "mb")``)."""
    return str(-(-n // 10**6))


class LsfSystem(BatchSystem):
    name = "lsf"
    label = "LSF"
    job_type = "lsf.job"
    submit_prog = "bsub"
    status_prog = "bjobs"
    cancel_prog = "bkill"
    verified = False
    install_hint = "run scalable where the LSF client commands are (source profile.lsf)"

    def identity_directives(self, identity: Mapping[str, str]) -> list[str]:
        return [f'-Jd "{description(identity)}"']

    def render(self, req: JobRequest) -> str:
        """dask-jobqueue's LSFJob header and template, with our identity and worker.

        Memory is written in MB (``-M``, ``lsf_units="mb"``: 10**6 bytes, rounded up),
        never guessed from this host's lsf.conf as LSFJob would when not told.
        """
        minutes = max(1, -(-req.walltime // 60))
        skip = [] if req.queue else ["#BSUB -q "]
        if not req.account:
            skip.append("#BSUB -P ")
        if not req.memory:
            skip.append("#BSUB -M ")
        header = [
            f"#BSUB -J {req.name}",
            f"#BSUB -e {req.log_directory}/{req.name or 'worker'}-%J.err",
            f"#BSUB -o {req.log_directory}/{req.name or 'worker'}-%J.out",
        ]
        if req.queue is not None:
            header.append(f"#BSUB -q {req.queue}")
        if req.account is not None:
            header.append(f'#BSUB -P "{req.account}"')
        header.append(f"#BSUB -n {req.cores}")
        if req.cores > 1:  # LSFJob keeps a multi-core job on one host
            header.append('#BSUB -R "span[hosts=1]"')
        header += [
            f"#BSUB -M {lsf_megabytes(req.memory or 2**30)}",
            f"#BSUB -W {minutes // 60:02d}:{minutes % 60:02d}",
        ]
        return job_script_text(
            req,
            "LSB_JOBID",
            header=header,
            directive="#BSUB",
            skip=skip,
            extra=[*self.identity_directives(req.identity), *req.extra_directives],
        )

    def submit(self, script: Path, *, cwd: Path, env: Mapping[str, str]) -> str:
        # bsub reads #BSUB directives only from a script on standard input.
        return self.parse_submit(self.run(["bsub"], cwd=cwd, env=env, stdin=script.read_text()))

    def submit_argv(self, script: Path) -> list[str]:
        return ["bsub"]  # the script goes to standard input

    def parse_submit(self, out: str) -> str:
        m = re.search(r"Job <(\d+)> is submitted", out)
        if m is None:
            raise ProviderError(f"bsub returned no job id (output: {out.strip()[:200]!r})")
        return m.group(1)

    def status_argv(self) -> list[str]:
        return ["bjobs", "-a", "-u", self.user(), "-o", FIELDS, "-json"]

    def parse_status(self, text: str) -> list[BatchJob]:
        return parse_bjobs_json(text)

    def already_gone(self, message: str) -> bool:
        return "has already finished" in message.lower() or super().already_gone(message)

"""HTCondor: ``condor_submit``, ``condor_q -json``, ``condor_rm``.

NOT run against a real HTCondor here: the submit description, command lines and parser
are tested on outputs in the format HTCondor documents (``tests/unit/
test_batch_systems.py``). Identity: ``batch_name`` plus custom job ClassAd attributes
``MY.ScalableLineage/ScalableAddress/ScalableKey``, read back by ``condor_q -json``.
HTCondor has no walltime: ``periodic_remove`` removes a job that has run longer.
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
    shell_join,
)

ATTRS = {"lineage": "ScalableLineage", "address": "ScalableAddress", "key": "ScalableKey"}
STATUS = {
    1: ("Idle", "pending"),
    2: ("Running", "alive"),
    3: ("Removed", "gone"),
    4: ("Completed", "gone"),
    5: ("Held", "pending"),
    6: ("Transferring Output", "ending"),
    7: ("Suspended", "pending"),
}


def parse_condor_q_json(text: str) -> list[BatchJob]:
    if not text.strip():
        return []
    out = []
    for ad in json.loads(text):
        word, phase = STATUS.get(int(ad.get("JobStatus", 0)), ("Unknown", "gone"))
        ident = {k: str(ad[a]) for k, a in ATTRS.items() if a in ad}
        reason = str(ad.get("HoldReason") or "") if word == "Held" else ""
        out.append(
            BatchJob(
                id=f"{ad.get('ClusterId')}.{ad.get('ProcId')}",
                name=str(ad.get("JobBatchName", "")),
                state=word,
                phase=phase,  # type: ignore[arg-type]
                reason=reason,
                nodes=str(ad.get("RemoteHost") or "").split("@")[-1],
                identity=ident if len(ident) == 3 else None,
            )
        )
    return out


class HtcondorSystem(BatchSystem):
    name = "htcondor"
    label = "HTCondor"
    job_type = "htcondor.job"
    submit_prog = "condor_submit"
    status_prog = "condor_q"
    cancel_prog = "condor_rm"
    verified = False
    install_hint = "run scalable on an HTCondor access point (a submit node)"

    def script_suffix(self) -> str:
        return ".sub"

    def identity_directives(self, identity: Mapping[str, str]) -> list[str]:
        return [f'MY.{ATTRS[k]} = "{v}"' for k, v in identity.items()]

    def render(self, req: JobRequest) -> str:
        """dask-jobqueue's HTCondorJob submit description, with our identity and worker.

        A submit description, not a script: ``Executable = /bin/sh`` (HTCondor sets the
        executable's argv[0] to condor_exec.exe, which confuses Python) and the prologue
        and worker command as one ``-c`` argument, quoted by HTCondor's "new" rules.
        """
        extra: dict[str, str] = {f"MY.{ATTRS[k]}": f'"{v}"' for k, v in req.identity.items()}
        extra["batch_name"] = req.name
        extra["periodic_remove"] = (
            f"JobStatus == 2 && (time() - EnteredCurrentStatus) > {int(req.walltime)}"
        )
        for d in req.extra_directives:
            k, _, v = d.partition("=")
            extra[k.strip()] = v.strip()
        # HTCondor runs one `/bin/sh -c` line: the prologue is joined into it (as
        # HTCondorJob joins its job_script_prologue).
        command = "; ".join([*_prologue(req), shell_join(req.command)])
        if "$(" in command.replace("$(ClusterId)", ""):
            # condor_submit expands $(name) macros anywhere in the description, quoted or
            # not: a value holding one would change meaning behind the plan's back.
            raise ProviderError(
                "an env:, prologue or worker argument holds '$(', which "
                "condor_submit would expand as a submit macro",
                hint="remove '$(' from the value (use $VAR or `cmd`)",
            )
        header: dict[str, object] = {  # HTCondorJob's, in its order
            "MY.DaskWorkerName": '"htcondor--$F(MY.JobId)--"',
            "batch_name": req.name,
            "RequestCpus": "MY.DaskWorkerCores",
            "RequestMemory": "floor(MY.DaskWorkerMemory / 1048576)",
            "RequestDisk": "floor(MY.DaskWorkerDisk / 1024)",
            "MY.JobId": '"$(ClusterId).$(ProcId)"',
            "MY.DaskWorkerCores": req.cores,
            "MY.DaskWorkerMemory": req.memory or 2**30,
            "MY.DaskWorkerDisk": req.disk or 2**30,
        }
        if req.log_directory:
            header.update(
                {
                    "LogDirectory": req.log_directory,
                    "Output": "$(LogDirectory)/worker-$F(MY.JobId).out",
                    "Error": "$(LogDirectory)/worker-$F(MY.JobId).err",
                    "Log": "$(LogDirectory)/worker-$(ClusterId).log",
                    # workers are killed to stop them: stream what they print
                    "Stream_Output": True,
                    "Stream_Error": True,
                }
            )
        header.update(extra)  # a key already there keeps its place (dict order)
        lines = "\n".join(f"{k} = {v}" for k, v in header.items())
        return (
            "# HTCondor submit description (scalable)\n\n"
            f"{lines}\n\n"
            f'Arguments = "{quote_arguments(["-c", command])}"\n'
            "Executable = /bin/sh\n\n"
            "Queue\n"
        )

    def parse_submit(self, out: str) -> str:
        m = re.search(r"submitted to cluster (\d+)", out)
        if m is None:
            raise ProviderError(
                f"condor_submit returned no cluster id (output: {out.strip()[:200]!r})"
            )
        return f"{m.group(1)}.0"

    def submit_argv(self, script: Path) -> list[str]:
        return ["condor_submit", str(script)]

    def status_argv(self) -> list[str]:
        attrs = [
            "ClusterId",
            "ProcId",
            "JobStatus",
            "JobBatchName",
            "HoldReason",
            "RemoteHost",
            *ATTRS.values(),
        ]
        return ["condor_q", self.user(), "-json", "-attributes", ",".join(attrs)]

    def parse_status(self, text: str) -> list[BatchJob]:
        return parse_condor_q_json(text)


def quote_arguments(args: list[str]) -> str:
    """Arguments by the submit file's "new" quoting rules (dask-jobqueue's): quotes
    doubled, an argument holding a space or ' wrapped in '…'. Goes inside "…"."""
    out = []
    for a in args:
        q = a.replace("'", "''").replace('"', '""')
        out.append(f"'{q}'" if " " in q or "'" in q else q)
    return " ".join(out)


def _prologue(req: JobRequest) -> list[str]:
    """HTCondor runs the command through ``/bin/sh -c``: exports only, no traps."""
    import shlex

    lines = list(req.prologue)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(req.env.items())]
    lines += [
        'export SCALABLE_JOB_ID="$_CONDOR_SLOT"',
        'export SCALABLE_LOCAL_DIR="${_CONDOR_SCRATCH_DIR:-/tmp}"',
    ]
    return lines

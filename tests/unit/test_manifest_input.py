"""Bad manifests answer with one clear error, fast (issue 11, items 12-15, 17, 19)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from scalable.errors import ManifestError
from scalable.manifest import parse_manifest
from scalable.spec import build_target

P = Path("scalable.yaml")


def load(text: str):
    return parse_manifest(textwrap.dedent(text).lstrip(), P)


def refused(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        load(text)
    return info.value


# -- item 12: alias bombs, cycles, deep nesting -----------------------------------------

LAUGHS = (
    "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    + "targets: {local: {provider: local}}\n"
)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (LAUGHS, "expands to more than 100,000 values"),
        ("x: &a [*a]\n", "alias *a is inside the collection it names"),
        ("x: &a {b: *a}\n", "alias *a is inside the collection it names"),
        ("[" * 5000, "nested deeper than 64 levels"),
        ("{a: " * 5000, "nested deeper than 64 levels"),
        ("- " * 5000 + "x\n", "nested deeper than 64 levels"),
        ("x: " + "y" * (300 * 1024) + "\n", "larger than 256 KiB"),
    ],
    ids=["laughs", "seq-cycle", "map-cycle", "flow-seq", "flow-map", "block-seq", "big"],
)
def test_yaml_bombs_are_refused_with_a_clean_error(text: str, needle: str) -> None:
    err = refused(text)
    assert needle in err.message
    assert err.message.startswith("scalable.yaml")
    assert err.hint


def test_aliases_within_bounds_still_work() -> None:
    m = load(
        """
        common: &w {threads_per_worker: 2, processes: false}
        targets:
          a: {provider: local, max_workers: 1, <<: *w}
          b: {provider: local, max_workers: 2, <<: *w}
        """.replace("common:", "x-common:")
    )
    assert build_target(m, "b").groups[0].threads_per_worker == 2


# -- item 19: $$ escapes ${...} ------------------------------------------------------------


def test_dollar_dollar_is_a_literal_dollar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCT", "GCIMS")
    m = load("""
        targets:
          hpc:
            provider: slurm
            account: ${ACCT}
            job_script_prologue:
              - echo $${SLURM_JOB_ID} $$HOME costs $$5
              - &p echo $${ACCT} ${ACCT}
              - *p
        """)
    cfg = m.manifest.targets["hpc"]
    assert cfg.account == "GCIMS"
    assert cfg.job_script_prologue == [
        "echo ${SLURM_JOB_ID} $HOME costs $5",
        "echo ${ACCT} GCIMS",
        "echo ${ACCT} GCIMS",  # an alias is expanded once, not unescaped twice
    ]


def test_unset_variable_hint_mentions_the_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    err = refused("targets: {local: {provider: local, env: {A: '${NOPE_UNSET}'}}}\n")
    assert "NOPE_UNSET is not set" in err.message and "$$" in (err.hint or "")

"""Route tasks to worker groups by tag: a model run in a container, GPU work, and plain
post-processing, all under one scheduler (docs/guides/worker-groups.rst).

Run it from anywhere: ``python examples/worker-groups/run.py`` (needs bubblewrap).
"""

import os
from pathlib import Path

from scalable import ScalableSession

HERE = Path(__file__).resolve().parent


def run_model(scenario):
    """In the `model` container: read an input through one bind, write through the other."""
    params = Path("/tmp/inputs/params.txt").read_text().strip()
    out = Path(f"/tmp/outputs/{scenario}.txt")
    out.write_text(f"{os.environ['MODEL_NAME']} {scenario} {params}\n")
    return out.name


def on_gpu(x):
    return x * 2  # a GPU kernel would go here


def summarise(names):
    return sorted(names)


if __name__ == "__main__":
    data = HERE / "data"
    (data / "inputs").mkdir(parents=True, exist_ok=True)
    (data / "outputs").mkdir(parents=True, exist_ok=True)
    (data / "inputs" / "params.txt").write_text("years=2020-2100\n")
    os.environ["WORKER_GROUPS_DATA"] = str(data)

    session = ScalableSession.from_yaml(HERE / "scalable.yaml", target="local")
    client = session.start(session.plan())
    try:
        runs = [client.submit(run_model, s, tag="model") for s in ("ssp1", "ssp2", "ssp5")]
        doubled = client.gather([client.submit(on_gpu, i, tag="gpu") for i in range(4)])
        summary = client.submit(summarise, runs, tag="post").result()
    finally:
        session.close()

    print(f"model outputs: {summary}")
    print(f"gpu results: {doubled}")
    for name in summary:
        print(f"  {name}: {(data / 'outputs' / name).read_text().strip()}")
    assert summary == ["ssp1.txt", "ssp2.txt", "ssp5.txt"]
    assert doubled == [0, 2, 4, 6]

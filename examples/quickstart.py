"""The tutorial's Python API example, verbatim, against the repository's scalable.yaml."""

from pathlib import Path

from scalable import ScalableSession


def my_func(i):
    return i * i


if __name__ == "__main__":
    import os

    os.chdir(Path(__file__).resolve().parent.parent)

    session = ScalableSession.from_yaml("./scalable.yaml", target="local")
    plan = session.plan()
    client = session.start(plan)
    futures = [client.submit(my_func, i, tag="analysis") for i in range(20)]
    results = client.gather(futures)
    session.close()

    print(f"results: {results}")
    assert results == [i * i for i in range(20)]

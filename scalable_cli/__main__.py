from scalable.cli import run

run()

from longteng.cli.main import run

run()

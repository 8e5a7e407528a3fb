"""`sotai bench ...`: benchmarks that print numbers, kept apart from the runtime core.

Nothing outside this package imports it (tests/test_cli.py checks); `sotai.cli` reaches each module
by name only when its sub-command is chosen. Their extra packages: `pip install -e .[bench]`.
"""

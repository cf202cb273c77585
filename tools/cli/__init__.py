"""`otp-tracker`: the operator's command line (Click, with Rich for tables and progress).

It reads the same Redis, tokens and secrets as the services do, through core.settings:
environment variables first, else what `make run` left in var/ (tools/cli/config.py).
"""

"""`python -m tools.cli ...`: the same as the `otp-tracker` console script."""

from tools.cli.app import main

main()

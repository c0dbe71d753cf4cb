"""`python -m commbench` and the `commbench` console script: the CLI (commbench.cli.main), with a Ctrl-C
during start-up (before the command installs its own stop handling, commbench.measure.supervise)
ending as any stop does: one line, exit 130."""

import sys


def run():
    try:
        from commbench.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("commbench: stopped by SIGINT\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()

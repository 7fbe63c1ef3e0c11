import json

import pytest

from phasediff.cli import main


@pytest.fixture
def cli(capsys):
    """Run the phasediff command in-process: returns (exit status, stdout, stderr)."""
    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err
    return run


@pytest.fixture
def cli_json(cli):
    def run(*argv):
        status, out, err = cli(*argv, "--json", "--quiet")
        assert status == 0, err
        return json.loads(out)
    return run

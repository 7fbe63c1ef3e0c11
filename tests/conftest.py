import json

import pytest
import torch

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


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests run many tiny tensor operations, for which a second thread costs more than it gives."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

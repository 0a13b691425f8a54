"""`chain` and datasets as a user of Modal, Ray or Lambda drives them
(helper "chaindata"): each test is a case the earlier rounds' tests
(test_dag*.py, test_data*.py, test_cli_parity.py, test_explore_*.py) do
not cover, embedded and against a real pysprinterd (`--server`)."""
import subprocess

from conftest import CLI


# ---- datasets ----

def test_a_put_of_content_a_concurrent_rm_drops_keeps_its_content(cli, tmp_path):
    """`data rm a` and `data put b SAME` at once (two shells, a pipeline's
    cleanup and its next put): the rm counted no reference to the content
    (b's version was not recorded yet) and deleted it, while the put had
    found it in the store and recorded a version of it. b's new version
    named content that was gone: `data get b` said "the content of dataset
    'b' version N is missing", and a run with --data b failed. A put now
    holds the content until its version is recorded."""
    blob = tmp_path / "blob.bin"
    for i in range(40):
        blob.write_bytes(i.to_bytes(4, "big") * 50000)
        cli("data", "put", "race-a", blob, check=0)
        procs = [subprocess.Popen([str(CLI), *args], cwd=cli.cwd, env=cli.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for args in
                 (["data", "rm", "race-a"], ["data", "put", "race-b", str(blob)])]
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, (i, out, err)
        got = subprocess.run([str(CLI), "data", "get", "race-b"], cwd=cli.cwd, env=cli.env, capture_output=True,
                             timeout=60)
        assert (got.returncode, got.stderr) == (0, b""), (i, got.stderr)
        assert got.stdout == blob.read_bytes(), i
        cli("data", "rm", "race-b", check=0)

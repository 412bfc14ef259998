"""One real `datagen` process per command: the installed console script, its exit code, stdout and stderr.

Everything else runs the CLI in-process (the `cli` fixture); these prove the script itself works end to end.
"""

import h5py
import pytest
import torch

from datagen.store.writers import open_writer

# command -> (arguments, expected exit code, text expected in stdout + stderr). {run} is a copy of the tiny run,
# {out} an augment output made for the test. Slow commands (demo, bench noise/scaling) are run with bad input:
# their real work is tested in-process elsewhere.
COMMANDS = {
    "train": (["train", "digits", "--recipe", "tiny8", "--epochs", "1", "--out", "r"], 0, "done: 1 epochs"),
    "recipes": (["recipes"], 0, "mnist-cpu"),
    "augment": (["augment", "{run}", "--per-class", "2", "--seeds-per-class", "1", "--no-filter", "--out", "a.h5"], 0, "wrote 20 generated images"),
    "inspect": (["inspect", "{out}"], 0, "verified: no problems found"),
    "evaluate": (["evaluate", "--run", "{run}", "--labels-per-class", "5", "--repeats", "1", "--arms", "real",
                  "--steps", "2", "--no-quality"], 0, "test accuracy on"),
    "demo": (["demo", "--epochs", "0"], 2, "--epochs"),
    "bench noise": (["bench", "noise", "{run}", "--scales", "a,b"], 2, "--scales"),
    "bench train": (["bench", "train", "--recipe", "tiny8", "--steps", "1"], 0, "fraction_of_peak"),
    "bench augment": (["bench", "augment", "--recipe", "tiny8", "--per-class", "5"], 0, "fraction_of_generator_limit"),
    "bench scaling": (["bench", "scaling", "--recipe", "tiny8", "--sizes", "1"], 2, "smaller than the batch size"),
    "reconstruct": (["reconstruct", "{run}", "--n", "4"], 0, "figures/reconstruct"),
    "sample": (["sample", "{run}", "--n", "4"], 0, "figures/sample-seed0.png"),
    "chain": (["chain", "{run}", "digits:1", "--steps", "1"], 0, "figures/chain"),
    "similarity": (["similarity", "{run}", "digits:1", "digits:2", "--neighbours", "2"], 0, "similarity score"),
    "explore": (["explore", "{run}", "digits:1", "--n", "2"], 0, "figures/explore"),
    "embed": (["embed", "{run}", "--method", "pca", "--n", "10"], 0, "5-NN accuracy"),
    "interpolate": (["interpolate", "{run}", "digits:1", "digits:2", "--steps", "2"], 0, "angle between the codes"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_installed_command(command, real_cli, run, tmp_path):
    args, code, expected = COMMANDS[command]
    out = tmp_path / "given.h5"
    with open_writer(out, "hdf5", image_shape=(8, 8, 1), class_names=["a", "b"], provenance={}) as writer:
        writer.write(torch.zeros(4, 8, 8, 1, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), torch.arange(4),
                     torch.zeros(4, dtype=torch.bool))
        writer.finish()
    done = real_cli(*[a.format(run=run, out=out) for a in args])
    assert done.returncode == code, done.stderr[-2000:]
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    if code == 2:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    if command == "augment":
        with h5py.File(tmp_path / "a.h5") as f:
            assert (~f["real"][:]).sum() == 20 and f["real"][:].sum() > 0 and f.attrs["complete"]  # + unlabeled

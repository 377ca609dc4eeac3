"""Hostile input through the CLI: each case exits with status 2 and one line on stderr, no traceback,
and leaves no run folder behind. The fast tier runs the cases through ``cli.main`` in this process;
the full tier also runs them as real subprocesses (resume cases are in test_resume.py)."""

import copy
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from checkpoint_files import write_untrained_checkpoint
from dataset_files import write_fashion_mnist
from qsnn_lightning.cli import main
from qsnn_lightning.training import train as driver
from qsnn_lightning.training.atomic_checkpoints import AtomicCheckpointIO
from qsnn_lightning.training.config import load_config

QSNN = str(Path(sys.executable).with_name("qsnn"))
PACKAGED = Path(__file__).resolve().parents[1] / "src" / "qsnn_lightning" / "experiments"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_fashion_mnist(tmp_path_factory.mktemp("fmnist"), train=40, test=16)


def assert_refused(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("qsnn: error: ") and needle in result.stderr, result.stderr


def qsnn_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``qsnn args`` as a real subprocess in ``cwd``."""
    return subprocess.run([QSNN, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(params=["in-process", pytest.param("subprocess", marks=pytest.mark.slow)])
def qsnn(request, monkeypatch, capsys):
    """Runs ``qsnn``: through ``cli.main`` in this process (the fast tier: an uncaught exception
    fails the test as a traceback would); in the full tier a test's first ``qsnn`` call is a real
    subprocess and the rest, which the in-process run of the test covers, run in process."""

    def in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        status = main(list(args))
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(["qsnn", *args], status, captured.out, captured.err)

    calls = []

    def first_as_a_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        calls.append(args)
        return (qsnn_process if len(calls) == 1 else in_process)(*args, cwd=cwd)

    return first_as_a_process if request.param == "subprocess" else in_process


@pytest.mark.parametrize("experiment, needle", [
    ("../experiments/fmnist_1w2u", "unknown experiment '../experiments/fmnist_1w2u'"),
    (str(PACKAGED / "fmnist_1w2u"), "pass the path of your own .yaml file"),
    ("missing.yaml", "experiment file missing.yaml does not exist"),
    ("base", "unknown experiment 'base'"),
])
def test_an_experiment_is_a_packaged_name_or_a_yaml_file(qsnn, tmp_path, data, experiment, needle):
    assert_refused(qsnn("train", experiment, f"data.data_dir={data}", "run_dir=out", cwd=tmp_path), needle)
    assert list(tmp_path.iterdir()) == [] and not list(PACKAGED.glob("*/*/config.yaml"))


@pytest.mark.parametrize("override, needle", [
    ("model.tau=nan", "'model.tau': nan; it must be a finite number"),
    ("optim.lr=nan", "'optim.lr': nan; it must be a finite number"),
    ("model.theta=-1", "'model.theta': -1.0; it must be > 0"),
    ("model.tau=1.5", "0 < tau <= 1"),
    ("seed=-1", "'seed': -1; it must satisfy 0 <= seed"),
    ("data.subset=0", "'data.subset': 0; it must be >= 1"),
    ("model.timesteps=1000000000", "1 <= timesteps <= 1024"),
    ("trainer.accelerator=abc", "invalid accelerator name"),
    ("trainer.precision=abc", "bad value for 'trainer.precision': 'abc'"),
    ("trainer.devices=abc", "lightning.Trainer refuses the trainer settings"),
    ("trainer.strategy=abc", "invalid strategy name"),
    ("trainer.limit_train_batches=-1", "'trainer.limit_train_batches': -1; it must be >= 0"),
    ("trainer.gradient_clip_val=-1", "'trainer.gradient_clip_val': -1; it must be >= 0"),
    ("trainer.num_sanity_val_steps=-5", "'trainer.num_sanity_val_steps': -5; it must be >= -1"),
    ("trainer.val_check_interval=0", "'trainer.val_check_interval': 0; it must be > 0"),
    ("trainer.max_stepz=3", "did you mean max_steps"),
    ("trainer.accumulate_grad_batches=0", "'trainer.accumulate_grad_batches': 0; it must be >= 1"),
    ("name=../../escape", "bad value for 'name': '../../escape'"),
    ("name=" + "a" * 300, "bad value for 'name': 300 characters; a run folder's name holds at most 255"),
    ("seed=${nosuch}", "cannot resolve the interpolation in 'seed' (Interpolation key 'nosuch' not found)"),
    ("seed=${seed}", "cannot resolve the interpolation in 'seed' (Recursive interpolation detected)"),
    ("wandb_project=${oc.env:QSNN_NO_SUCH_VARIABLE}", "cannot resolve the interpolation in 'wandb_project'"),
    ("data=5", "override data=... replaces a whole section of the config; set its keys instead, e.g. data.batch_size"),
    ("neurobench=maybe", "bad value for 'neurobench': Value 'maybe' is not a valid bool"),
    ("neurobench_samples=0", "bad value for 'neurobench_samples': 0; it must be >= 1 or null"),
])
def test_values_are_checked_before_anything_is_written(qsnn, tmp_path, data, override, needle):
    assert_refused(qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", override, cwd=tmp_path), needle)
    assert list(tmp_path.iterdir()) == []


def test_a_repeated_override_is_refused(qsnn, tmp_path, data):
    result = qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", "optim.lr=0.1", "optim.lr=0.2", cwd=tmp_path)
    assert_refused(result, "override 'optim.lr' is given more than once")


def test_files_and_folders_that_cannot_be_used(qsnn, tmp_path, data):
    (tmp_path / "a_file").write_text("not a folder")
    assert_refused(qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=a_file", "trainer.fast_dev_run=true",
                        cwd=tmp_path), "cannot create the run folder under run_dir=a_file")
    (tmp_path / "list.yaml").write_text("- model\n- data\n")
    assert_refused(qsnn("train", "list.yaml", cwd=tmp_path), "must hold a mapping of config keys")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    assert_refused(qsnn("train", "broken.yaml", cwd=tmp_path), "cannot read the experiment configuration")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file", "broken.yaml", "list.yaml"]


@pytest.mark.parametrize("content", [
    "model:\n  bits: 1w2u\nnotes: [" + ", ".join(["1"] * 20_000) + "]\n",  # large, no alias
    "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",  # an alias bomb
], ids=["large", "aliases"])
def test_a_yaml_file_too_large_to_be_an_experiment_is_one_line(qsnn, tmp_path, content):
    (tmp_path / "huge.yaml").write_text(content)
    assert_refused(qsnn("train", "huge.yaml", "run_dir=runs", cwd=tmp_path),
                   "it holds more than 10,000 YAML nodes, counting what its aliases repeat")
    assert [path.name for path in tmp_path.iterdir()] == ["huge.yaml"]


def test_footprint_bounds(qsnn, tmp_path):
    assert_refused(qsnn("footprint", "--batch", "99999999999999999999999", cwd=tmp_path), "--batch must be")


@pytest.mark.slow
def test_a_closed_output_pipe_is_one_line():
    process = subprocess.Popen([QSNN, "footprint", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the first line, as with `| head -0`
    error = process.stderr.read()
    assert process.wait() == 2 and "Traceback" not in error
    assert error.strip() == "qsnn: error: the output pipe was closed before everything was written"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A fmnist_1w2u checkpoint as ``qsnn train`` writes it, made without training."""
    return write_untrained_checkpoint(tmp_path_factory.mktemp("checkpoint"))[0]


def test_export_refusals_are_one_line_and_leave_nothing_behind(qsnn, tmp_path, data, checkpoint):
    (tmp_path / "a_file").write_text("keep me")
    cases = [
        (["--out", "a_file/out"], "cannot write the export folder a_file/out"),
        (["--out", "a_file"], "a_file already exists and is not empty"),
        (["--out", "many", "--samples", "100000", f"data.data_dir={data}"], "--samples 100000 is more than the 16 samples"),
        (["--out", "m4", "--target", "cortex-m4", "--samples", "5000"], "sensor region holds: use --samples 4012 or fewer"),
        (["--out", "out", "trainer.foo=1"], "trainer.foo=1: an export runs no Trainer"),
    ]
    for arguments, needle in cases:
        assert_refused(qsnn("export", str(checkpoint), *arguments, cwd=tmp_path), needle)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_file"] and (tmp_path / "a_file").read_text() == "keep me"


def test_export_folder_is_an_ordinary_folder(qsnn, tmp_path, data, checkpoint):
    result = qsnn("export", str(checkpoint), "--out", "out", "--samples", "2", f"data.data_dir={data}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~current_umask()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def damaged(hyper_parameters: dict, case: str):
    """A copy of a checkpoint's hyper-parameters changed the way ``case`` says."""
    changed = copy.deepcopy(hyper_parameters)
    if case == "no bits":
        del changed["spec"]["bits"]
    elif case == "unknown arch":
        changed["spec"]["arch"] = "nope"
    elif case == "experiment not a mapping":
        changed["experiment"] = "text"
    elif case == "unknown hyper-parameter":
        changed["extra_thing"] = 3
    else:
        changed = [1]
    return changed


@pytest.mark.parametrize("case, needle", [
    ("no bits", "does not say its model's bits"),
    ("unknown arch", "cannot be built by this version (unknown architecture 'nope'"),
    ("experiment not a mapping", "is not a qsnn-lightning checkpoint"),
    ("unknown hyper-parameter", "unexpected keyword argument 'extra_thing'"),
    ("hyper-parameters not a mapping", "is not a qsnn-lightning checkpoint"),
])
def test_checkpoints_that_load_but_are_wrong(qsnn, tmp_path, checkpoint, case, needle):
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["hyper_parameters"] = damaged(content["hyper_parameters"], case)
    torch.save(content, tmp_path / "wrong.ckpt")
    assert_refused(qsnn("test", "wrong.ckpt", cwd=tmp_path), needle)
    assert_refused(qsnn("export", "wrong.ckpt", "--out", "out", cwd=tmp_path), needle)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["wrong.ckpt"]


@pytest.mark.parametrize("overrides, needle", [
    # Lightning replaces the limits under fast_dev_run before it would check them
    (["trainer.limit_val_batches=-4", "trainer.fast_dev_run=true"], "'trainer.limit_val_batches': -4; it must be >= 0"),
    # Lightning refuses it only once fitting starts, with a traceback
    (["trainer.val_check_interval=1000", "data.batch_size=8"],
     "trainer.val_check_interval=1000 is more than the 5 training batches of an epoch; give at most 5"),
])
def test_settings_lightning_checks_late_or_never_are_one_line(qsnn, tmp_path, data, overrides, needle):
    assert_refused(qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", *overrides, cwd=tmp_path), needle)
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_fails_after_its_folder_was_made_leaves_nothing_or_is_marked(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(driver, "check_validation_interval", lambda cfg, datamodule: None)  # as if it were not checked
    with pytest.raises(ValueError, match="val_check_interval"):  # Lightning refuses it only when fitting starts
        main(["train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", "trainer.val_check_interval=1000",
              "trainer.accelerator=cpu"])
    assert not list((tmp_path / "runs").rglob("*"))  # no half-made run folder

    def crash_after_a_checkpoint(cfg, run_dir, datamodule, activation_memory):
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"epoch 0")
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(driver, "_fit_and_test", crash_after_a_checkpoint)
    with pytest.raises(RuntimeError):
        driver.train(load_config("fmnist_1w2u", [f"data.data_dir={data}", f"run_dir={tmp_path / 'kept'}", "check_memory=false"]))
    (run_dir,) = (tmp_path / "kept" / "fmnist_1w2u").iterdir()
    assert (run_dir / "FAILED").read_text() == "RuntimeError: the machine went away\n"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()  # kept to resume from


@pytest.mark.parametrize("command", ["test", "export"])
def test_what_is_not_a_checkpoint_file_is_named(qsnn, tmp_path, command):
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "folder").mkdir()
    for path, needle in (("folder", "checkpoint folder is a directory"), ("/dev/null", "/dev/null is not a regular file"),
                         ("loop_a", "loop_a is a symbolic link that leads to no file"), ("none.ckpt", "none.ckpt does not exist")):
        assert_refused(qsnn(command, path, *(["--out", "out"] if command == "export" else []), cwd=tmp_path), needle)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["folder", "loop_a", "loop_b"]


@pytest.mark.parametrize("override", ["model.bits=1w4u", "model.timesteps=4", "model.arch=vgg16"])
def test_test_and_export_refuse_overrides_of_the_saved_model(qsnn, tmp_path, checkpoint, override):
    needle = f"{override}: qsnn test uses the model saved in the checkpoint"
    assert_refused(qsnn("test", str(checkpoint), override, cwd=tmp_path), needle)
    assert_refused(qsnn("export", str(checkpoint), "--out", "out", override, cwd=tmp_path), needle.replace("test", "export"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override, needle", [
    ("trainer.limit_test_batches=0", "trainer.limit_test_batches=0 tests no batch"),
    ("trainer.accelerator=tpu", "lightning.Trainer refuses the trainer settings"),
    pytest.param("trainer.accelerator=gpu", "lightning.Trainer refuses the trainer settings",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_test_refuses_trainer_settings_that_test_nothing_or_cannot_run(qsnn, tmp_path, data, checkpoint, override, needle):
    assert_refused(qsnn("test", str(checkpoint), f"data.data_dir={data}", override, cwd=tmp_path), needle)


SWEEP_COMMAND = 'command: ["${env}", qsnn, train, fmnist_1w2u, "${args_no_hyphens}"]\n'


@pytest.mark.parametrize("text, needle", [
    ("name: ../../escaped\nmethod: grid\nparameters: {loss.lam: {values: [0]}}\n" + SWEEP_COMMAND,
     "bad name '../../escaped'; a sweep's name is a folder name"),
    ("method: grid\nparameters: {loss.lam: {values: 5}}\n" + SWEEP_COMMAND, "parameter 'loss.lam' needs 'values: [...]' (a list)"),
    ("method: grid\nparameters: [a, b]\n" + SWEEP_COMMAND, "parameters must map each key to 'values: [...]'"),
    ("- method\n- grid\n", "must hold a mapping (method, parameters, command), not a list"),
])
def test_malformed_sweep_files_are_one_line_and_write_nothing(qsnn, tmp_path, text, needle):
    (tmp_path / "mine.yaml").write_text(text)
    assert_refused(qsnn("sweep", "mine.yaml", "--local", cwd=tmp_path), needle)
    assert [path.name for path in tmp_path.iterdir()] == ["mine.yaml"]


def test_a_truncated_sweep_manifest_is_one_line_and_kept(qsnn, tmp_path, data):
    (tmp_path / "mine.yaml").write_text("name: mine\nmethod: grid\nparameters: {loss.lam: {values: [0]}}\n" + SWEEP_COMMAND)
    (tmp_path / "runs" / "sweeps" / "mine").mkdir(parents=True)
    (tmp_path / "runs" / "sweeps" / "mine" / "sweep.json").write_text('{"sweep": "mi')
    assert_refused(qsnn("sweep", "mine.yaml", "--local", f"data.data_dir={data}", cwd=tmp_path), "sweep.json is damaged")
    assert (tmp_path / "runs" / "sweeps" / "mine" / "sweep.json").read_text() == '{"sweep": "mi'


@pytest.mark.parametrize("tensor", ["model.features.1.0.weight", "model.stem.1.running_var"])
def test_checkpoints_with_non_finite_weights_are_named(qsnn, tmp_path, checkpoint, tensor):
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert tensor in content["state_dict"], sorted(content["state_dict"])
    content["state_dict"][tensor].view(-1)[0] = float("nan")
    torch.save(content, tmp_path / "diverged.ckpt")
    needle = f"checkpoint diverged.ckpt is not usable: '{tensor}' holds 1 NaN of"
    assert_refused(qsnn("test", "diverged.ckpt", cwd=tmp_path), needle)
    assert_refused(qsnn("export", "diverged.ckpt", "--out", "out", cwd=tmp_path), needle)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["diverged.ckpt"]


def test_a_diverging_run_stops_in_one_line_naming_the_tensor(qsnn, tmp_path, data):
    result = qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", "optim.lr=1e30", "data.batch_size=8",
                  "trainer.enable_progress_bar=false", cwd=tmp_path)
    last = result.stderr.strip().splitlines()[-1]  # after what training logged to stderr before it
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last.startswith("qsnn: error: training diverged at epoch 0, step ") and "holds" in last and "NaN" in last
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # nothing non-finite was saved


def test_a_full_disk_mid_run_is_one_line_and_keeps_the_earlier_checkpoint(tmp_path, data, monkeypatch, capsys):
    """The second checkpoint write fails as on a full disk (ENOSPC, injected in this process; the
    full tier fills a real tmpfs): the first checkpoint stays whole and loads."""
    real_save, calls = AtomicCheckpointIO.save_checkpoint, []

    def fills_the_disk(self, checkpoint, path, storage_options=None):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", fills_the_disk)
    monkeypatch.chdir(tmp_path)
    status = main(["train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", "data.batch_size=8", "trainer.max_epochs=2",
                   "trainer.enable_progress_bar=false"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and last.startswith("qsnn: error: the disk under runs/fmnist_1w2u/") and "is full" in last
    assert "checkpoints need about" in last
    (run_dir,) = (tmp_path / "runs" / "fmnist_1w2u").iterdir()
    (kept,) = run_dir.glob("checkpoints/*.ckpt")
    assert torch.load(kept, weights_only=True)["epoch"] == 0
    assert (run_dir / "FAILED").read_text().startswith("OSError: [Errno 28] No space left on device")


@pytest.fixture
def small_disk(tmp_path):
    """A 1.2 MB tmpfs (room for one checkpoint of the default model, not two); skips where this
    process may not mount one (not root, or no CAP_SYS_ADMIN)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.slow
def test_a_real_full_disk_leaves_no_partial_file(small_disk, tmp_path, data):
    result = qsnn_process("train", "fmnist_1w2u", f"data.data_dir={data}", f"run_dir={small_disk}", "data.batch_size=8",
                          "trainer.max_epochs=2", "trainer.enable_progress_bar=false", cwd=tmp_path)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and "Traceback" not in result.stderr and "is full" in last, result.stderr[-2000:]
    for checkpoint in small_disk.rglob("*.ckpt"):
        torch.load(checkpoint, weights_only=True)  # whole: every checkpoint left loads
    assert all(path.stat().st_size > 0 for path in small_disk.rglob("*") if path.is_file())


def test_bench_refusals_are_one_line(qsnn, tmp_path, data, checkpoint):
    """``qsnn bench`` on a file that is not a Q-SNN checkpoint, on a missing dataset, and with ``--samples 0``
    or more samples than the test split; none writes neurobench.json."""
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, tmp_path / "other.ckpt")
    cases = [
        (["other.ckpt"], "other.ckpt is not a qsnn-lightning checkpoint"),
        ([str(checkpoint), f"data.data_dir={tmp_path / 'nowhere'}", "data.download=false"], "Fashion-MNIST not found"),
        ([str(checkpoint), "--samples", "0"], "--samples must be at least 1, got 0"),
        ([str(checkpoint), "--samples", "100000", f"data.data_dir={data}"], "--samples 100000 is more than the 16 samples"),
        ([str(checkpoint), "model.bits=1w4u"], "model.bits=1w4u: qsnn bench uses the model saved in the checkpoint"),
    ]
    for arguments, needle in cases:
        assert_refused(qsnn("bench", *arguments, cwd=tmp_path), needle)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.ckpt"]
    assert not (checkpoint.parent / "neurobench.json").exists()


def test_more_neurobench_samples_than_the_test_split_are_refused_before_training(qsnn, tmp_path, data):
    assert_refused(qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", "neurobench=true",
                        "neurobench_samples=100000", cwd=tmp_path), "neurobench_samples=100000 is more than the 16 samples")
    assert list(tmp_path.iterdir()) == []


def test_neurobench_runs_without_the_package_are_refused_before_training(qsnn, tmp_path, data, monkeypatch):
    """``neurobench=true`` without the package (hidden here, and by a sitecustomize in the subprocess)
    names the pip command, and trains or writes nothing."""
    work, hide = tmp_path / "work", tmp_path / "hide"
    work.mkdir(), hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['neurobench'] = None  # as if not installed\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setitem(sys.modules, "neurobench", None)
    assert_refused(qsnn("train", "fmnist_1w2u", f"data.data_dir={data}", "run_dir=runs", "neurobench=true", cwd=work),
                   "neurobench=true (NeuroBench's figures in results.json; or set neurobench=false) needs NeuroBench, "
                   "which is not installed: pip install 'qsnn-lightning[neurobench]'")
    assert list(work.iterdir()) == []

import pytest
from omegaconf import OmegaConf

from qsnn_lightning.cli import main
from qsnn_lightning.training.config import ConfigError, experiment_names, load_config, restore_config


def test_merge_order_base_then_experiment_then_command_line():
    cfg = load_config("cifar10_1w4u", ["model.timesteps=3", "optim.lr=0.05"])
    assert cfg.name == "cifar10_1w4u"
    assert cfg.model.arch == "resnet19" and cfg.model.bits == "1w4u"  # experiment file
    assert cfg.model.tau == 0.5 and cfg.loss.lam == 1e-3  # base.yaml
    assert cfg.model.timesteps == 3 and cfg.optim.lr == 0.05  # command line
    assert cfg.data.batch_size == 256


def test_paper_settings_per_dataset():
    expected = {
        "cifar10": ("resnet19", 2, "sgd", 256), "cifar100": ("resnet19", 2, "sgd", 256),
        "tinyimagenet": ("vgg16", 4, "adam", 256), "dvsgesture": ("vggsnn", 16, "sgd", 64),
        "dvscifar10": ("vggsnn", 10, "sgd", 64),
    }
    for dataset, (arch, steps, optimizer, batch) in expected.items():
        for suffix, bits in (("fp", "32w32u"), ("1w8u", "1w8u"), ("1w4u", "1w4u"), ("1w2u", "1w2u")):
            cfg = load_config(f"{dataset}_{suffix}")
            assert (cfg.model.arch, cfg.model.timesteps, cfg.optim.name, cfg.data.batch_size) == (arch, steps, optimizer, batch)
            assert cfg.model.bits == bits and cfg.data.name == dataset


def test_table_1_rows_train_on_the_whole_training_set_and_test_every_epoch():
    table_1 = [name for name in experiment_names()
               if name.split("_")[0] in ("cifar10", "cifar100", "tinyimagenet", "dvsgesture", "dvscifar10")
               and name != "dvsgesture_mcu_1w2u"]
    assert len(table_1) == 23  # 20 rows and the 3 Figure 5 ablations
    for name in table_1:
        cfg = load_config(name)
        assert cfg.data.val_fraction == 0 and cfg.test_every_epoch, name
        assert cfg.optim.weight_decay == 1e-4, name  # the authors' release; the paper states none
    for name in ("fmnist_1w2u", "fmnist_fp", "dvsgesture_mcu_1w2u"):
        assert not load_config(name).test_every_epoch and load_config(name).data.val_fraction > 0
    assert load_config("cifar10_1w2u", ["data.val_fraction=0.1"]).data.val_fraction == 0.1


def test_ablation_turns_ws_dr_off():
    cfg = load_config("fmnist_1w2u_nowsdr")
    assert cfg.model.standardize == "none" and cfg.loss.lam == 0.0 and cfg.model.bits == "1w2u"
    assert load_config("fmnist_1w2u").model.standardize == "layer"


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["model.depth=3"], "unknown config key 'model.depth'; valid keys in 'model': arch, bits, timesteps"),
        (["learning_rate=3"], "unknown config key 'learning_rate'; valid keys: name, seed"),
        (["model.timesteps=two"], "bad value for 'model.timesteps'"),
        (["model.arch=resnet20"], "bad value for 'model.arch': 'resnet20'; allowed: dvsmcunet, fmnistnet, resnet19, vgg16, vggsnn"),
        (["model.bits=1w33u"], "bad value for 'model.bits'"),
        (["model.bits=3w2u"], "weight bits must be one of 1, 2, 4, 8, 32"),
        (["trainer.max_epochs=1.5"], "bad value for 'trainer.max_epochs': 1.5; lightning.Trainer takes int or null"),
        (["trainer.max_stepz=3"], "unknown config key 'trainer.max_stepz': not an argument of lightning.Trainer; did you mean max_steps"),
        (["trainer.precision=abc"], "bad value for 'trainer.precision': 'abc'; lightning.Trainer takes one of 64, 32, 16,"),
        (["trainer.callbacks=[]"], "'trainer.callbacks' is set by every run; the run adds its checkpoints"),
        (["trainer.logger=false"], "'trainer.logger' is set by every run; choose loggers with the top-level 'logger' key"),
        (["trainer.compile=true"], "unknown config key 'trainer.compile'"),
        (["data.name=nope"], "bad value for 'data.name': 'nope'; allowed: cifar10"),
        (["optim.name=rmsprop"], "allowed: sgd, adam"),
        (["model.neuron=triton"], "bad value for 'model.neuron': 'triton'; allowed: fused, reference"),
        (["model.membrane_scale=median"], "bad value for 'model.membrane_scale': 'median'; allowed: max, tanh, threshold, learned"),
        (["speed.compile=maybe"], "bad value for 'speed.compile'"),
        (["model.timesteps=0"], "must be > 0"),
        (["model.ste_window=0"], "bad value for 'model.ste_window': 0.0; it must be > 0"),
        (["model.input_bits=4"], "bad value for 'model.input_bits': 4; allowed: 8 (int8 input pixels, what the export reads), 32"),
        (["loss.lam=-1"], "must be >= 0"),
        (["data.val_fraction=1.5"], "data.val_fraction"),
        (["trainer.max_epochs"], "not of the form key=value"),
        (["data.events.split_by=count"], "bad value for 'data.events.split_by': 'count'; allowed: number, time"),
        (["data.events.resize=0"], "'data.events.resize': 0; it must be >= 1 or null"),
        (["data.events.resize_mode=nearest"], "bad value for 'data.events.resize_mode': 'nearest'; allowed: bilinear, area"),
        (["data.events.rotate=-5"], "'data.events.rotate': -5.0; it must be >= 0"),
        (["data.events.blur=1"], "unknown config key 'data.events.blur'; valid keys in 'data.events': split_by, resize"),
    ],
)
def test_bad_config_is_one_line_naming_the_fix(overrides, needle):
    with pytest.raises(ConfigError) as error:
        load_config("fmnist_1w2u", overrides)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_every_trainer_argument_that_takes_a_value_is_accepted():
    overrides = [
        "trainer.max_steps=40", "trainer.accumulate_grad_batches=2", "trainer.val_check_interval=10",
        "trainer.check_val_every_n_epoch=2", "trainer.gradient_clip_algorithm=norm", "trainer.profiler=simple",
        "trainer.benchmark=true", "trainer.precision=16", "trainer.devices=[0,1]", "trainer.deterministic=warn",
        "trainer.max_time={days: 1, hours: 2}", "trainer.limit_train_batches=0.5", "trainer.num_sanity_val_steps=0",
    ]
    trainer = load_config("fmnist_1w2u", overrides).trainer
    assert trainer.max_steps == 40 and trainer.accumulate_grad_batches == 2 and trainer.val_check_interval == 10
    assert trainer.precision == 16 and list(trainer.devices) == [0, 1] and trainer.max_time == {"days": 1, "hours": 2}
    assert trainer.max_epochs == 13  # fmnist_1w2u.yaml, kept beside the new keys


def test_trainer_annotations_decide_values():
    from qsnn_lightning.training.trainer_arguments import accepts, trainer_arguments

    hints = trainer_arguments()
    assert "plugins" not in hints and "logger" not in hints  # objects only / set by every run
    assert accepts(hints["fast_dev_run"], True) and accepts(hints["fast_dev_run"], 3)
    assert not accepts(hints["max_steps"], True) and not accepts(hints["max_steps"], 2.5)
    assert accepts(hints["gradient_clip_val"], 1) and accepts(hints["gradient_clip_val"], None)
    assert accepts(hints["precision"], "bf16-mixed") and not accepts(hints["precision"], "16-bit")


def test_checkpoints_of_earlier_versions_move_speed_options_out_of_trainer():
    saved = OmegaConf.to_container(load_config("fmnist_1w2u"))
    del saved["speed"]
    saved["trainer"].update(compile=True, channels_last=True, reuse_freed_memory=False)
    restored = restore_config(saved)
    assert dict(restored.speed) == {"compile": True, "channels_last": True, "reuse_freed_memory": False,
                                    "activation_memory": "auto"}  # an option they did not have: its default
    assert "compile" not in restored.trainer


def test_unknown_experiment_lists_the_experiments():
    with pytest.raises(ConfigError, match="unknown experiment 'cifar11'; choose one of cifar100_1w2u"):
        load_config("cifar11")
    assert "fmnist_1w2u" in experiment_names() and "base" not in experiment_names()


def test_experiment_extends_a_packaged_experiment_and_a_file(tmp_path):
    """``extends:`` merges the parent (itself over base.yaml) under the file; the file's keys win."""
    (tmp_path / "narrow.yaml").write_text("extends: fmnist_1w2u\nmodel:\n  bits: 1w4u\ndata:\n  batch_size: 32\n")
    (tmp_path / "narrow_t3.yaml").write_text("extends: narrow.yaml\nmodel:\n  timesteps: 3\n")
    cfg = load_config(str(tmp_path / "narrow_t3.yaml"), ["optim.lr=0.05"])
    default = load_config("fmnist_1w2u")
    assert cfg.name == "narrow_t3" and "extends" not in cfg
    assert (cfg.model.timesteps, cfg.model.bits, cfg.data.batch_size, cfg.optim.lr) == (3, "1w4u", 32, 0.05)
    assert (cfg.model.ste_window, cfg.optim.weight_decay) == (default.model.ste_window, default.optim.weight_decay) != (1.0, 1e-4)
    assert load_config("fmnist_fp").trainer == default.trainer and load_config("fmnist_fp").model.bits == "32w32u"


@pytest.mark.parametrize("content, needle", [
    ("extends: cifar11\n", "loop.yaml, key 'extends': unknown experiment 'cifar11'; choose one of"),
    ("extends: missing.yaml\n", "key 'extends': experiment file"),
    ("extends: [fmnist_1w2u]\n", "'extends' must name one experiment"),
    ("extends: loop.yaml\n", "experiment files extend each other in a loop (loop.yaml -> loop.yaml)"),
])
def test_bad_extends_is_one_line(tmp_path, content, needle):
    (tmp_path / "loop.yaml").write_text(content)
    with pytest.raises(ConfigError) as error:
        load_config(str(tmp_path / "loop.yaml"))
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_saved_config_restores_with_overrides():
    saved = OmegaConf.to_container(load_config("fmnist_1w4u"))
    restored = restore_config(saved, ["data.batch_size=7"])
    assert restored.model.bits == "1w4u" and restored.data.batch_size == 7


@pytest.mark.parametrize("args", [
    ["train", "fmnist_1w2u", "model.depth=3"], ["train", "nope"], ["train", "model.bits=2w"],
    ["train", "dvsgesture_mcu_1w2u", "data.events.resize_mode=nearest"],
])
def test_cli_config_errors_exit_2_with_one_line(args, capsys):
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("qsnn: error: ") and len(error.strip().splitlines()) == 1

"""Bad numbers are refused when the config is loaded, naming the file and the key (issue 17.2):
before, lr=-0.1 / batch_size=0 / lr=1e400 crashed later, and epochs=0 / epochs=-3 / lr=0
wrote a 'done' record."""
import pytest

from replicate import config
from replicate.cli import main
from tests.helpers import tiny_config_text

TINY = tiny_config_text('cfg-tiny')

BAD = [
    ("optim.lr", -0.1), ("optim.lr", 0), ("optim.lr", 0.0), ("optim.lr", float("inf")),
    ("optim.lr", float("nan")), ("optim.batch_size", 0), ("optim.batch_size", -4),
    ("optim.epochs", 0), ("optim.epochs", -3), ("optim.warmup_epochs", -1),
    ("optim.warmup_epochs", 5), ("optim.weight_decay", -0.01), ("optim.momentum", -0.5),
    ("data.image_size", 0), ("data.num_workers", -1), ("train.eval_batch_size", 0),
    ("train.max_steps_per_epoch", 0),
]


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "tiny.py"
    p.write_text(TINY)
    return p


def test_valid_config_loads(cfg):
    exp = config.load(cfg)
    assert exp.optim.lr == 0.1 and exp.optim.epochs == 2


@pytest.mark.parametrize("key,value", BAD)
def test_out_of_range_value_is_refused_naming_file_and_key(cfg, key, value):
    with pytest.raises(config.ConfigError) as e:
        config.load(cfg, {key: value})
    msg = str(e.value)
    assert str(cfg) in msg and f"'{key}'" in msg and "must be" in msg


@pytest.mark.parametrize("text", ["optim = dict(lr=1e400)", "optim = dict(epochs=0)",
                                  "optim = dict(lr=-0.1)", "optim = dict(batch_size=0)"])
def test_bad_value_written_in_the_file(cfg, text):
    cfg.write_text(TINY + text + "\n")
    with pytest.raises(config.ConfigError, match=str(cfg)):
        config.load(cfg)


@pytest.mark.parametrize("override", ["optim.lr=-0.1", "optim.lr=1e400", "optim.batch_size=0",
                                      "optim.epochs=0", "optim.epochs=-3", "optim.lr=0"])
def test_cli_refuses_in_one_line_and_trains_nothing(cfg, tmp_path, capsys, override):
    root = tmp_path / "runs"
    assert main(["run", str(cfg), "--runs-root", str(root), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert str(cfg) in err and override.split("=")[0] in err
    assert not list(root.rglob("record.json"))  # nothing trained, no 'done' record

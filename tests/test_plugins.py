"""Papers and methods as plug-ins: a paper folder in a temporary papers root (metadata in its
paper.py, a method module that registers itself, a config with mmengine's custom_imports) is
discovered, planned, run in smoke mode and reported without any edit to the package; the
report's paper metadata (reconstruction banner, the paper it builds on) comes from paper.py."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replicate import config, methods, papers
from replicate.cli import main
from replicate.results.published import COLUMNS as PUB_COLUMNS
from replicate.results.report import write_report
from tests.test_results_pipeline import write_published, write_record

REPO = Path(__file__).resolve().parents[1]

TOY_PAPER = '''"""Toy paper (test fixture)."""
TITLE = "Toy: a plug-in paper (test fixture)"
RECONSTRUCTION = True
STATUS_NOTE = "TOY-STATUS: a toy paper discovered from its own folder."
UNAVAILABLE_REASON = "the toy paper prints no table"
OWN_METHODS = ("toy_prompt",)
DEFAULT_MODE = "smoke"
'''

# a token-space method like VPT-shallow with another prompt init, registered at import
TOY_METHOD = '''"""toy_prompt: VPT-shallow with N(0, init_std) prompts (test fixture)."""
from dataclasses import dataclass

import torch.nn as nn

from replicate.methods import VPTOptions, VPTShallow, register
from replicate.methods.base import check_range


@dataclass(frozen=True)
class ToyOptions(VPTOptions):
    init_std: float = 0.02

    def validate(self) -> None:
        super().validate()
        check_range("init_std", self.init_std, self.init_std > 0, "a number > 0")


class ToyPrompt(VPTShallow):
    name = "toy_prompt"
    Options = ToyOptions

    def __init__(self, opts, adapter, num_classes, default_pool="cls"):
        super().__init__(opts, adapter, num_classes, default_pool)
        nn.init.normal_(self.prompt_embeddings, std=opts.init_std)


register(ToyPrompt)
'''

TOY_CONFIG = '''custom_imports = dict(imports=['toy_method'], allow_failed_imports=False)
name = 'toy-smoke-digits'
paper = 'toy'
smoke = True
protocol = 'digits-smoke'
backbone = dict(name='vit_micro_patch8_32.mae_test', checkpoint='')
method = dict(type='toy_prompt', num_prompts=2, init_std=0.5)
data = dict(benchmark='digits', task='digits', image_size=32, num_workers=0)
optim = dict(lr=0.1, batch_size=100, epochs=2, warmup_epochs=0)
train = dict(max_steps_per_epoch=2)
cell = dict(table='smoke', backbone='micro_mae_test', method='toy_prompt', benchmark='digits',
            group='', task='digits', metric='top1')
'''


@pytest.fixture
def toy_root(tmp_path, monkeypatch):
    """A papers root holding only the toy paper; afterwards the toy method is forgotten again
    (registry, sys.modules, sys.path), so other tests see the package's methods only."""
    root = tmp_path / "papers"
    toy = root / "toy"
    (toy / "configs" / "smoke").mkdir(parents=True)
    (toy / "paper.py").write_text(TOY_PAPER)
    (toy / "toy_method.py").write_text(TOY_METHOD)
    (toy / "configs" / "smoke" / "toy.py").write_text(TOY_CONFIG)
    (toy / "published.csv").write_text(",".join(PUB_COLUMNS) + "\n")  # header only
    monkeypatch.setenv("REPLICATE_PAPERS", str(root))
    path_before = list(sys.path)
    yield root
    methods._REGISTRY._items.pop("toy_prompt", None)
    sys.modules.pop("toy_method", None)
    sys.path[:] = path_before


def test_toy_paper_plans_and_runs_in_smoke_mode_from_its_folder(toy_root, tmp_path, capsys):
    assert papers.known() == ["toy"]
    runs, out = tmp_path / "runs", tmp_path / "report" / "toy"
    # no --mode: the paper's DEFAULT_MODE (smoke) is taken from its paper.py
    assert main(["plan", "--paper", "toy", "--runs-root", str(runs)]) == 0
    assert "mode=smoke" in capsys.readouterr().out
    # the local executor trains in another process: the job re-imports the toy module
    assert main(["reproduce", "--paper", "toy", "--executor", "local", "--runs-root", str(runs),
                 "--out", str(out)]) == 0
    recs = [json.loads(p.read_text()) for p in (runs / "toy" / "smoke").glob("*/record.json")]
    assert len(recs) == 2  # one config x the digits-smoke protocol's two seeds
    assert {r["method_type"] for r in recs} == {"toy_prompt"}
    assert {r["config"]["method"]["options"]["init_std"] for r in recs} == {0.5}
    text = (out / "comparison.md").read_text()
    status = text.split("## Rule")[0]
    assert "# Toy: a plug-in paper (test fixture)" in text
    assert "RECONSTRUCTION" in status and "TOY-STATUS" in status and "SMOKE" in status
    assert "the toy paper prints no table" in status
    assert "| toy_prompt |" in text


def test_custom_imports_register_before_validation(toy_root):
    cfg = toy_root / "toy" / "configs" / "smoke" / "toy.py"
    exp = config.load(cfg)
    assert exp.method.type == "toy_prompt" and "toy_prompt" in methods.registered()
    # the toy method's own option check runs at load, naming file and key
    with pytest.raises(config.ConfigError, match=r"toy\.py.*'method\.init_std' = -1\.0"):
        config.load(cfg, {"method.init_std": -1.0})
    # the imports travel with the experiment (a job re-imports before re-validating) but are
    # no part of the config hash
    d = exp.to_dict()
    assert d["custom_imports"]["imports"] == ["toy_method"]
    assert config.from_dict(d, source=str(cfg)).config_hash() == exp.config_hash()
    assert "custom_imports" not in config.load(
        REPO / "papers" / "lspt" / "configs" / "smoke" / "digits" / "lspt.py").to_dict()


def test_missing_custom_import_names_file_key_and_module(toy_root):
    cfg = toy_root / "toy" / "configs" / "smoke" / "broken.py"
    cfg.write_text(TOY_CONFIG.replace("'toy_method'", "'no_such_toy_module'"))
    with pytest.raises(config.ConfigError) as e:
        config.load(cfg)
    msg = str(e.value)
    assert str(cfg) in msg and "custom_imports" in msg and "no_such_toy_module" in msg


def test_unknown_paper_lists_the_discovered_ones(toy_root, capsys):
    assert main(["plan", "--paper", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown paper 'nope'" in err and "toy" in err


def test_paper_info_field_for_the_makefile(capsys):
    for key in papers.known():
        assert main(["paper-info", "--paper", key, "--field", "default_mode"]) == 0
        mode = capsys.readouterr().out.strip()
        assert mode == papers.info(key).default_mode and mode in papers.MODES
    assert papers.info("vptm").default_mode == "search"  # VPTM's hyper-parameters are unknown


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_plan_never_passes_an_empty_mode():
    for extra in ([], ["MODE="], ["MODE=smoke"]):
        out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "plan-toy", *extra],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if "replicate plan" in x)
        assert "--paper toy" in line
        assert ("--mode smoke" in line) == (extra == ["MODE=smoke"]), line


def _constants(path: Path) -> dict:
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(path.read_text()).body
            if isinstance(n, ast.Assign)}


def test_report_metadata_comes_from_paper_py(tmp_path, monkeypatch):
    """The reconstruction banner and the baseline paper shown beside come from lspt's
    paper.py: a copy with another note (and then without BUILDS_ON) changes the report."""
    real = _constants(REPO / "papers" / "lspt" / "paper.py")
    assert real["RECONSTRUCTION"] is True and real["BUILDS_ON"] == "gatevpt"
    assert papers.info("lspt", REPO / "papers").status_note == real["STATUS_NOTE"]

    root = tmp_path / "papers"
    for p in ("gatevpt", "lspt"):
        (root / p).mkdir(parents=True)
    row = ("gatevpt", "Table 1", "mae_vitb16", "gatevpt", "fgvc", "", "cub", "top1", "70.56")
    write_published(root / "gatevpt" / "published.csv", [row])
    lpub = write_published(root / "lspt" / "published.csv", [])
    runs = tmp_path / "runs"
    for seed, v in ((42, 72.0), (44, 73.0)):
        write_record(runs, "lspt", "pinned", f"l-{seed}", backbone="mae_vitb16", method="lspt",
                     benchmark="fgvc", task="cub", seed=seed, value=v)
        write_record(runs, "gatevpt", "pinned", f"g-{seed}", backbone="mae_vitb16",
                     method="gatevpt", benchmark="fgvc", task="cub", seed=seed, value=v - 2)
    text = (REPO / "papers" / "lspt" / "paper.py").read_text()
    note = "COPIED-NOTE: this banner is read from the paper folder."
    (root / "lspt" / "paper.py").write_text(
        text + f"\nSTATUS_NOTE = {note!r}\n")  # a later assignment wins, as in python
    monkeypatch.setenv("REPLICATE_PAPERS", str(root))
    ctx = {"figures": False, "generated_at": "x", "commit": "x", "command": "x"}
    md = write_report("lspt", runs, tmp_path / "out", lpub, ctx)["comparison"].read_text()
    head = md.split("## Rule")[0]
    assert f"**RECONSTRUCTION.** {note}" in head
    assert real["TITLE"] in md.splitlines()[0]
    assert "## LSPT beside gatevpt (gatevpt: ours and published)" in md

    (root / "lspt" / "paper.py").write_text("RECONSTRUCTION = False\n")
    md = write_report("lspt", runs, tmp_path / "out2", lpub, ctx)["comparison"].read_text()
    assert "RECONSTRUCTION" not in md.split("## Rule")[0] and " beside " not in md


def test_malformed_paper_py_names_file_and_fix(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "paper.py").write_text("import os\nTITLE = 'x'\n")
    with pytest.raises(papers.PaperError, match=r"paper\.py:1: .*plain constants"):
        papers.read_info(folder)
    (folder / "paper.py").write_text("DEFAULT_MODE = 'fast'\n")
    with pytest.raises(papers.PaperError, match="DEFAULT_MODE = 'fast'.*pinned, search, smoke"):
        papers.read_info(folder)
    (folder / "paper.py").write_text("TITEL = 'typo'\n")
    with pytest.raises(papers.PaperError, match="unknown constant 'TITEL'"):
        papers.read_info(folder)

"""The docs' figures come from the results files, and their links lead somewhere."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "update_readme.py"


def load_update_readme():
    spec = importlib.util.spec_from_file_location("update_readme", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_tables_are_what_the_results_files_say():
    run = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_results_table_has_one_place_in_the_docs_and_every_marker_a_table():
    update_readme = load_update_readme()
    texts = {doc: (ROOT / doc).read_text() for doc in update_readme.DOCS}
    for name in update_readme.TABLES:
        homes = [doc for doc, text in texts.items()
                 if f"<!-- table:{name} -->" in text and f"<!-- /table:{name} -->" in text]
        assert len(homes) == 1, (name, homes)
    for doc, text in texts.items():
        for name in re.findall(r"<!-- table:([\w-]+) -->", text):
            assert name in update_readme.TABLES, (doc, name)


def test_the_readmes_raw_and_rounded_figures_against_a_target_are_the_shipped_weights():
    """Prose quotes the table's figures beside issue 2's targets; this catches them going stale after a ship."""
    evaluation = json.loads((ROOT / "results" / "evaluation.json").read_text())
    shipped = {(f"{scores['psnr']:.3f}", f"{scores['psnr_uint8']:.3f}")
               for model in evaluation["models"].values()
               for scores in (model["Set5"], model["Set14"])}
    prose = " ".join((ROOT / "README.md").read_text().split())
    quoted = re.findall(r"(\d\d\.\d{3}) / (\d\d\.\d{3})(?: rounded)? against", prose)
    assert quoted
    assert [pair for pair in quoted if pair not in shipped] == []


def test_fill_tables_rewrites_a_stale_table_between_its_markers():
    update_readme = load_update_readme()
    stale = "before\n<!-- table:quantize -->\n| made up | 99.99 |\n<!-- /table:quantize -->\nafter\n"
    filled = update_readme.fill_tables(stale)
    assert "99.99" not in filled
    assert filled.startswith("before\n<!-- table:quantize -->\n| model | set |")
    assert filled.endswith("<!-- /table:quantize -->\nafter\n")


def test_relative_links_in_the_docs_lead_to_files():
    docs = [ROOT / doc for doc in load_update_readme().DOCS] + [ROOT / "TRAINING.md", ROOT / "deploy" / "README.md"]
    for doc in docs:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), (doc.name, target)


def test_plain_make_lists_targets_that_all_exist():
    listed = subprocess.run(["make", "--no-print-directory"], capture_output=True, text=True, cwd=ROOT)
    assert listed.returncode == 0 and "make demo" in listed.stdout
    targets = sorted(set(re.findall(r"^make ([a-z-]+)", listed.stdout, re.M)))
    assert {"demo", "test", "train", "evaluate", "quantize", "deploy-pi"} <= set(targets)
    database = subprocess.run(["make", "-pRrq", "-f", "Makefile", ":"], capture_output=True, text=True, cwd=ROOT).stdout
    defined = set(re.findall(r"^([a-z][a-z-]*):", database, re.M))
    assert set(targets) <= defined, set(targets) - defined


def test_update_readme_refuses_a_flag_it_does_not_know():
    run = subprocess.run([sys.executable, str(SCRIPT), "--chek"], capture_output=True, text=True)
    assert run.returncode == 2 and "unrecognized arguments: --chek" in run.stderr


def test_the_curves_collect_a_new_runs_log_and_give_each_model_a_panel_with_its_target(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("plot_curves", ROOT / "scripts" / "plot_curves.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    run = tmp_path / "runs" / "mine" / "fsrcnn-s_x3"
    run.mkdir(parents=True)
    (run / "log.csv").write_text("step,loss,val_psnr,lr,seconds\n1000,1e-3,32.40,1e-4,30\n2000,1e-3,32.45,1e-5,60\n")
    monkeypatch.setattr(plot, "ROOT", tmp_path)
    monkeypatch.setattr(plot, "LOGS", tmp_path / "results" / "training_logs")
    assert plot.main([]) == 0
    assert (tmp_path / "results" / "training_logs" / "mine_fsrcnn-s_x3.csv").is_file()
    drawn = (tmp_path / "results" / "validation_curves.svg").read_text()
    assert "fsrcnn-s_x3: best 32.450, target 32.75" in drawn
    assert ">100k</text>" in drawn and ">150k</text>" not in drawn  # 2,000 steps of 64 patches: ticks at 0, 50k, 100k
    assert [plot.patches_label(k * plot.tick_step(2.4e6)) for k in range(5)] == ["0", "500k", "1M", "1.5M", "2M"]

import json
import subprocess

import torch

from conftest import PYTHON, ROOT
from edge_runtime.files import sha256
from training.model import FSRCNN, load_weights, preset, save_weights

SHIPPED = ROOT / "training" / "weights" / "fsrcnn-s_x2.pt"


def soup(paths, out, data_dir):
    return subprocess.run([PYTHON, "-m", "training.soup", *map(str, paths), "--out", str(out), "--data-dir", str(data_dir),
                           "--threads", "1"], capture_output=True, text=True, cwd=ROOT)


def nudged(tmp_path, name, sign):
    """The shipped weights moved by +/- one fixed random direction: each copy scores lower, their mean is the original."""
    model = load_weights(SHIPPED)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(sign * 0.05 * param.abs().mean() * torch.randn(param.shape, generator=generator))
    path = tmp_path / f"{name}.pt"
    save_weights(model, path, {"train_sets": ["T91"], "transpose": True})
    return path


def test_averaging_two_fine_tunes_that_straddle_a_better_point_recovers_it(tiny_dataset, tmp_path):
    plus, minus = nudged(tmp_path, "plus", 1), nudged(tmp_path, "minus", -1)
    out = tmp_path / "soup" / "fsrcnn-s_x2.pt"
    run = soup([plus, minus], out, tiny_dataset)
    assert run.returncode == 0, run.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    steps = meta["soup"]
    assert [s["kept"] for s in steps] == [True, True]
    assert meta["val_psnr"] > max(s["psnr"] for s in steps)
    assert {s["sha256"] for s in steps} == {sha256(plus), sha256(minus)}
    assert meta["train_sets"] == ["T91"] and meta["transpose"] is True  # what QAT repeats
    original, mixed = load_weights(SHIPPED).state_dict(), load_weights(out).state_dict()
    assert all(torch.allclose(mixed[k], original[k], atol=1e-6) for k in original)


def test_an_ingredient_that_lowers_validation_is_left_out(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    untrained = tmp_path / "untrained.pt"
    save_weights(FSRCNN(load_weights(SHIPPED).config), untrained)  # the same architecture, untrained
    out = tmp_path / "soup.pt"
    run = soup([untrained, SHIPPED], out, tiny_dataset)
    assert run.returncode == 0, run.stderr
    steps = json.loads(out.with_suffix(".json").read_text())["soup"]
    assert [(s["ingredient"], s["kept"]) for s in steps] == [(str(SHIPPED), True), (str(untrained), False)]
    assert steps[1]["soup_psnr"] < steps[0]["psnr"]
    shipped, kept = load_weights(SHIPPED).state_dict(), load_weights(out).state_dict()
    assert all(torch.equal(kept[k], shipped[k]) for k in shipped)


def test_ingredients_of_different_models_are_one_clear_line_and_no_file(tiny_dataset, tmp_path):
    other = tmp_path / "fsrcnn_x2.pt"
    save_weights(FSRCNN(preset("fsrcnn", 2)), other)
    out = tmp_path / "soup.pt"
    run = soup([SHIPPED, other], out, tiny_dataset)
    assert run.returncode == 2 and "a soup needs one architecture, scale and head padding" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_soup_of_one_checkpoint_is_refused(tiny_dataset, tmp_path):
    run = soup([SHIPPED, SHIPPED.parent / "." / SHIPPED.name], tmp_path / "soup.pt", tiny_dataset)  # one file, twice
    assert run.returncode == 2 and "at least two different checkpoints" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_recorded_fsrcnn_x4_soup_is_what_its_committed_ingredients_make(data_dir, tmp_path):
    recorded = ROOT / "results" / "controls" / "soup31" / "fsrcnn_x4.pt"
    out = tmp_path / "fsrcnn_x4.pt"
    run = soup(sorted((ROOT / "training" / "ingredients" / "fsrcnn_x4").glob("*.pt")), out, data_dir)
    assert run.returncode == 0, run.stderr
    made, kept = load_weights(out).state_dict(), load_weights(recorded).state_dict()
    assert all(torch.allclose(made[k], kept[k], atol=1e-7) for k in kept)
    made_steps = json.loads(out.with_suffix(".json").read_text())["soup"]
    recorded_steps = json.loads(recorded.with_suffix(".json").read_text())["soup"]
    assert [(s["sha256"], s["kept"]) for s in made_steps] == [(s["sha256"], s["kept"]) for s in recorded_steps]

import pytest
import torch

from training.model import (
    PRESETS, RELU_FORMS, SCALES, CheckpointError, FSRCNN, FSRCNNReLUForm, FSRCNNSubpixel, load_weights, relu_layers,
    macs_per_lr_pixel, preset, save_weights, subpixel_kernel_size,
)


def random_model(name: str, scale: int, seed: int = 0) -> FSRCNN:
    torch.manual_seed(seed)
    model = FSRCNN(preset(name, scale)).eval()
    torch.nn.init.normal_(model.deconv.weight, std=0.05)  # paper init is tiny; make the head matter
    torch.nn.init.normal_(model.deconv.bias, std=0.05)
    return model


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", [(17, 23), (32, 32), (1, 5)])
def test_output_is_exactly_scale_times_input_for_odd_sizes(name, scale, size):
    model = random_model(name, scale)
    out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, size[0] * scale, size[1] * scale)


@pytest.mark.parametrize("scale", SCALES)
def test_conv_plus_pixel_shuffle_equals_the_9x9_deconvolution(scale):
    model = random_model("fsrcnn", scale)
    x = torch.rand(1, 1, 19, 26)
    with torch.no_grad():
        reference = model(x)
        assert (FSRCNNSubpixel(model)(x) - reference).abs().max() < 1e-5
        assert (model.forward_subpixel(x) - reference).abs().max() < 1e-5


@pytest.mark.parametrize("form", RELU_FORMS)
@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("scale", SCALES)
def test_int8_relu_forms_equal_the_prelu_model_border_included(form, name, scale):
    model = random_model(name, scale)
    for module in model.body:
        if isinstance(module, torch.nn.PReLU):
            torch.nn.init.uniform_(module.weight, -0.5, 1.5)  # any slope, negative ones included
        else:
            torch.nn.init.normal_(module.bias, std=0.1)  # the folded form carries biases across layers
    torch.nn.init.normal_(model.deconv.bias, std=0.1)
    x = torch.rand(1, 1, 15, 22)
    with torch.no_grad():
        relu_form = FSRCNNReLUForm(model, form)
        assert all(isinstance(m, torch.nn.Conv2d) for m in relu_form.convs)
        reference = model(x)
        assert (relu_form(x) - reference).abs().max() / reference.abs().max() < 1e-5
        gains = [torch.empty(w.shape[0]).uniform_(0.2, 5) for w, _ in relu_layers(model, form)[:-1]]
        balanced = FSRCNNReLUForm(model, form, gains)  # every hidden channel rescaled: still the same function
        assert (balanced(x) - reference).abs().max() / reference.abs().max() < 1e-5


def test_folded_form_executes_fewer_macs_than_the_split_form():
    model = random_model("fsrcnn-s", 2)
    macs = {form: sum(w.numel() for w, _ in relu_layers(model, form)) for form in RELU_FORMS}
    assert macs == {"split": 10180, "folded": 7870}


def test_subpixel_training_path_gives_the_deconvolution_the_same_gradients():
    model = random_model("fsrcnn-s", 3)
    x = torch.rand(1, 1, 12, 12)
    model(x).square().sum().backward()
    reference = model.deconv.weight.grad.clone()
    model.zero_grad()
    model.forward_subpixel(x).square().sum().backward()
    assert torch.allclose(model.deconv.weight.grad, reference, atol=1e-5)


def test_subpixel_kernel_is_5x5_for_x2_x3_and_3x3_for_x4():
    assert [subpixel_kernel_size(s) for s in SCALES] == [5, 5, 3]


def test_architecture_matches_the_paper():
    model = FSRCNN(preset("fsrcnn", 3))
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [5, 1, 3, 3, 3, 3, 1]
    prelus = [m for m in model.body if isinstance(m, torch.nn.PReLU)]
    assert [p.num_parameters for p in prelus] == [56, 12, 12, 12, 12, 12, 56]
    assert model.deconv.kernel_size == (9, 9) and model.deconv.stride == (3, 3)
    assert macs_per_lr_pixel(preset("fsrcnn-s", 3).__class__(32, 5, 1, 3)) == 25 * 32 + 160 + 225 + 160 + 81 * 32


def test_checkpoint_round_trip_restores_identical_outputs(tmp_path):
    model = random_model("fsrcnn-s", 2)
    save_weights(model, tmp_path / "fsrcnn-s_x2.pt", {"step": 5})
    loaded = load_weights(tmp_path / "fsrcnn-s_x2.pt", expect_scale=2)
    x = torch.rand(1, 1, 9, 9)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert torch.load(tmp_path / "fsrcnn-s_x2.pt", weights_only=True)  # plain state dict


def test_corrupt_missing_and_mismatched_checkpoints_raise_clear_errors(tmp_path):
    model = random_model("fsrcnn-s", 2)
    path = tmp_path / "m.pt"
    save_weights(model, path)
    with pytest.raises(CheckpointError, match="asked for x3"):
        load_weights(path, expect_scale=3)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_weights(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "absent.pt")

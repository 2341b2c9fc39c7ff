import pytest
import torch

from training.model import (
    PRESETS, RELU_FORMS, SCALES, CheckpointError, FSRCNN, FSRCNNReLUForm, FSRCNNSubpixel, dihedral_mean, load_weights,
    relu_layers, macs_per_lr_pixel, preset, repad_deconv, save_weights, subpixel_kernel_size,
)

# (scale, deconvolution padding): the default 4 at every scale, and 3, which centres the x3 head
HEADS = [(2, 4), (3, 4), (4, 4), (3, 3), (4, 3)]


def random_model(name: str, scale: int, seed: int = 0, deconv_pad: int = 4) -> FSRCNN:
    torch.manual_seed(seed)
    model = FSRCNN(preset(name, scale, deconv_pad)).eval()
    torch.nn.init.normal_(model.deconv.weight, std=0.05)  # paper init is tiny; make the head matter
    torch.nn.init.normal_(model.deconv.bias, std=0.05)
    return model


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("scale,pad", HEADS)
@pytest.mark.parametrize("size", [(17, 23), (32, 32), (1, 5)])
def test_output_is_exactly_scale_times_input_for_odd_sizes(name, scale, pad, size):
    model = random_model(name, scale, deconv_pad=pad)
    out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 1, size[0] * scale, size[1] * scale)


@pytest.mark.parametrize("scale,pad", HEADS)
def test_conv_plus_pixel_shuffle_equals_the_9x9_deconvolution(scale, pad):
    model = random_model("fsrcnn", scale, deconv_pad=pad)
    x = torch.rand(1, 1, 19, 26)
    with torch.no_grad():
        reference = model(x)
        assert (FSRCNNSubpixel(model)(x) - reference).abs().max() < 1e-5
        assert (model.forward_subpixel(x) - reference).abs().max() < 1e-5


@pytest.mark.parametrize("form", RELU_FORMS)
@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("scale,pad", HEADS)
def test_int8_relu_forms_equal_the_prelu_model_border_included(form, name, scale, pad):
    model = random_model(name, scale, deconv_pad=pad)
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


@pytest.mark.parametrize("scale", SCALES)
def test_the_self_ensemble_commutes_with_every_turn_and_mirror_though_the_model_does_not(scale):
    model = random_model("fsrcnn-s", scale)
    x = torch.rand(1, 1, 9, 13)
    symmetries = [lambda t, k=k, m=m: torch.rot90(t.transpose(-2, -1) if m else t, k, (-2, -1))
                  for k in range(4) for m in (False, True)]
    with torch.no_grad():
        ensemble = dihedral_mean(model, x)
        assert ensemble.shape == model(x).shape
        for g in symmetries:
            assert torch.allclose(dihedral_mean(model, g(x)), g(ensemble), atol=1e-6)
        assert not torch.allclose(model(symmetries[1](x)), symmetries[1](model(x)), atol=1e-4)


def test_subpixel_kernel_is_5x5_for_x2_x3_and_3x3_for_x4():
    assert [subpixel_kernel_size(s) for s in SCALES] == [5, 5, 3]


def test_padding_3_centres_the_x3_head_on_a_3x3_conv():
    assert [subpixel_kernel_size(s, 3) for s in (3, 4)] == [3, 3]


def test_a_padding_that_cannot_give_scale_times_the_input_is_refused():
    with pytest.raises(ValueError, match="exactly 2x"):
        preset("fsrcnn", 2, deconv_pad=3)


@pytest.mark.parametrize("scale", (3, 4))
def test_repadded_deconvolution_computes_the_same_function_when_its_shifted_out_taps_are_zero(scale):
    padded_4 = random_model("fsrcnn-s", scale)
    with torch.no_grad():
        padded_4.deconv.weight[..., 0, :] = 0  # the row and column that padding 3 shifts out
        padded_4.deconv.weight[..., :, 0] = 0
    padded_3 = FSRCNN(preset("fsrcnn-s", scale, deconv_pad=3)).eval()
    padded_3.load_state_dict(padded_4.state_dict())
    with torch.no_grad():
        padded_3.deconv.weight.copy_(repad_deconv(padded_4.deconv.weight, 4, 3))
        x = torch.rand(1, 1, 13, 10)
        assert (padded_3(x) - padded_4(x)).abs().max() < 1e-6
        assert torch.equal(repad_deconv(padded_3.deconv.weight, 3, 4), padded_4.deconv.weight)


def test_architecture_matches_the_paper():
    model = FSRCNN(preset("fsrcnn", 3))
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [5, 1, 3, 3, 3, 3, 1]
    prelus = [m for m in model.body if isinstance(m, torch.nn.PReLU)]
    assert [p.num_parameters for p in prelus] == [56, 12, 12, 12, 12, 12, 56]
    assert model.deconv.kernel_size == (9, 9) and model.deconv.stride == (3, 3)
    assert macs_per_lr_pixel(preset("fsrcnn-s", 3).__class__(32, 5, 1, 3)) == 25 * 32 + 160 + 225 + 160 + 81 * 32


@pytest.mark.parametrize("scale,pad", [(2, 4), (3, 3)])
def test_checkpoint_round_trip_restores_identical_outputs(tmp_path, scale, pad):
    model = random_model("fsrcnn-s", scale, deconv_pad=pad)
    path = tmp_path / f"fsrcnn-s_x{scale}.pt"
    save_weights(model, path, {"step": 5})
    loaded = load_weights(path, expect_scale=scale)
    assert loaded.config.deconv_pad == pad
    x = torch.rand(1, 1, 9, 9)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert torch.load(path, weights_only=True)  # plain state dict


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

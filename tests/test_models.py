import torch

from course_utils.models import Normalized, SmallCNN, build_model, resnet18_cifar


def test_small_cnn_is_encoder_then_classifier():
    torch.manual_seed(0)
    model = SmallCNN(num_classes=10).eval()
    x = torch.rand(5, 3, 32, 32)
    features = model.encoder(x)
    assert features.shape == (5, model.feature_dim)
    assert torch.allclose(model(x), model.classifier(features))
    assert model(x).shape == (5, 10)
    assert sum(p.numel() for p in model.parameters()) < 300_000


def test_readout_sets_the_feature_size():
    assert SmallCNN(readout=2).encoder(torch.rand(2, 3, 32, 32)).shape == (2, 256)


def test_resnet18_cifar_keeps_resolution_in_the_stem():
    model = resnet18_cifar(10).eval()
    assert model.encoder[0].stride == (1, 1)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and model.feature_dim == 512


def test_build_model_by_name():
    assert isinstance(build_model("small_cnn"), SmallCNN)
    tiny = build_model("tiny_cnn", 4)  # the grade profile's: the same network at a quarter of the width
    assert isinstance(tiny, SmallCNN) and tiny(torch.rand(1, 3, 32, 32)).shape == (1, 4)
    count = lambda model: sum(p.numel() for p in model.encoder.parameters())  # noqa: E731
    assert count(tiny) < count(build_model("small_cnn")) / 10
    assert build_model("resnet18", 4)(torch.rand(1, 3, 32, 32)).shape == (1, 4)


def test_normalized_applies_mean_and_std_before_the_model():
    inner = torch.nn.Identity()
    wrapped = Normalized(inner, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(wrapped(x), (x - 0.5) / 0.25)
    assert {name for name, _ in wrapped.named_buffers()} == {"mean", "std"}
    # gradients flow to the [0, 1] input, as the attacks need
    x.requires_grad_(True)
    wrapped(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 4.0))

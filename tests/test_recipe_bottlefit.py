"""BottleFit recipe logic: the equal-byte input carries 100 bytes, the student's shapes and link, KD with α = 0
is CE, stage 2 leaves the encoder bit-identical."""

import torch
import torch.nn.functional as F

from isthmus.nn.resnet import ResNet
from isthmus.recipes.bottlefit import AESplit, Settings, _kd_loss, _student, lowres
from isthmus.tasks.multistage import StageConfig, train_stage


def test_lowres_depends_only_on_the_10x10_grey_8bit_image():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 28, 28)
    out = lowres(x, 10)
    assert out.shape == x.shape and torch.equal(out[:, 0], out[:, 1])
    g = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    small = F.adaptive_avg_pool2d(g, 10)
    assert torch.allclose(small * 255, torch.round(small * 255), atol=0.5)
    # a change invisible after pooling + 8-bit rounding does not change what the server sees
    y = x.clone()
    y[:, :, 0, 0] += 1e-5
    assert torch.equal(lowres(y, 10), out)
    assert torch.allclose(lowres(torch.full((1, 3, 28, 28), 0.5), 10), torch.full((1, 3, 28, 28), 128 / 255))


def test_student_shapes_bytes_and_link():
    torch.manual_seed(0)
    t = ResNet(widths=(8, 16, 32)).eval()
    st = _student(2, t, seed=0).eval()
    x = torch.rand(4, 3, 28, 28)
    assert st.encoder(x).shape == (4, 2, 7, 7)  # 98 values: 95.8 % compression of 2,352
    assert st(x).shape == (4, 10)
    st.quantize = False
    float_out = st(x)
    st.quantize = True
    assert not torch.equal(st(x), float_out) and torch.allclose(st(x), float_out, atol=0.5)
    assert st.stage3 is st.tail[0]
    ae = AESplit(2, t).eval()
    assert ae(x).shape == (4, 10)


def test_kd_with_alpha_zero_is_cross_entropy_and_stage2_keeps_the_encoder():
    torch.manual_seed(0)
    t = ResNet(widths=(8, 16, 32)).eval()
    st = _student(2, t, seed=0)
    x, y = torch.rand(8, 3, 28, 28), torch.randint(0, 10, (8,))
    tl = torch.randn(8, 10)
    st.train()
    torch.manual_seed(1)
    kd0 = _kd_loss(st, alpha=0.0)(x, None, None, tl, y)
    torch.manual_seed(1)
    assert torch.allclose(kd0, F.cross_entropy(st(x), y))
    enc = {k: v.clone() for k, v in st.encoder.state_dict().items()}
    train_stage([st.decoder, st.tail], _kd_loss(st), (x, x, x, tl, y),
                StageConfig(epochs=1, optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=5e-4, batch_size=4), 0,
                frozen=[st.encoder])
    assert all(torch.equal(enc[k], v) for k, v in st.encoder.state_dict().items())
    assert Settings().c_small * 49 == 98

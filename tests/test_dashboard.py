"""SAE feature dashboard: escaping of untrusted token text, links, CLI, and a headless-Chromium check."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from isthmus.cli.main import main as cli_main
from isthmus.interp.dashboard import build_dashboard, feature_stats
from isthmus.interp.sae import SAEConfig, SparseAutoEncoder
from isthmus.interp.store import ActivationStore, StoreWriter

torch.set_num_threads(1)

CHROMIUM = "/usr/bin/chromium"
VOCAB = ["<script>alert(1)</script>", "plain", "a&b", "\"quoted\"", "<img src=x onerror=alert(2)>", "tok5"]


def _store_and_sae(tmp_path: Path) -> tuple[ActivationStore, SparseAutoEncoder]:
    g = torch.Generator().manual_seed(0)
    d, n_seq, t = 8, 12, 10
    emb = torch.randn(len(VOCAB), d, generator=g)
    ids = torch.randint(0, len(VOCAB), (n_seq, t), generator=g)
    ids[:, 3] = 0  # every sequence holds the <script> token
    acts = emb[ids] + 0.05 * torch.randn(n_seq, t, d, generator=g)
    with StoreWriter(tmp_path / "store", meta={"model": "test", "point": "p", "vocab": VOCAB}) as w:
        w.add(acts.reshape(-1, d), ids.reshape(-1).int(), torch.arange(t).repeat(n_seq).int(),
              torch.arange(n_seq).repeat_interleave(t))
    torch.manual_seed(0)
    sae = SparseAutoEncoder(SAEConfig(d_in=d, d_sae=16, bottleneck_config={"k": 3}))
    with torch.no_grad():  # feature i reads token i's embedding, so every token has a feature firing on it
        sae.W_enc[: len(VOCAB)] = emb / emb.norm(dim=1, keepdim=True)
        sae.W_dec[: len(VOCAB)] = sae.W_enc[: len(VOCAB)]
    return ActivationStore(tmp_path / "store"), sae


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs)["href"])
        if tag == "script":
            self.scripts += 1


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    store, sae = _store_and_sae(tmp)
    expl = {0: {"explanation": "fires on <script> tags", "score": 0.9, "scores": {"detection": 0.9}}}
    index = build_dashboard(sae, store, tmp / "site", token_text=lambda i: VOCAB[i], explanations=expl, n_top=5)
    return index, sae, store


def test_untrusted_text_is_escaped(site):
    index, _, _ = site
    pages = [index, *sorted((index.parent / "features").glob("*.html"))]
    assert len(pages) > 2
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<script>alert" not in text and "<img src=x" not in text
        assert _parse(page).scripts == (1 if page == index else 0)  # only the index's own sorting script
    f0 = (index.parent / "features" / "f00000.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in f0 and "fires on &lt;script&gt; tags" in f0
    assert "<svg" in f0 and "Decoder direction" in f0 and "detection" in f0


def test_links_resolve(site):
    index, sae, _ = site
    links = _parse(index).links
    assert links and all(h.startswith("features/f") for h in links)
    for href in links:
        page = index.parent / href
        assert page.is_file(), href
        for sub in _parse(page).links:
            assert (page.parent / sub).resolve().is_file(), (page, sub)
    data = json.loads((index.parent / "features.json").read_text())
    assert len(data["features"]) == sae.config.d_sae
    assert {r["page"] for r in data["features"] if r["page"]} == set(links)


def test_feature_stats_match_dense_computation(site):
    _, sae, store = site
    acts = store.read()
    st = feature_stats(sae, acts, n_top=4, batch_size=7)  # several batches: the running top-k merge
    with torch.no_grad():
        z = sae.encode(acts)
    assert (st.count == (z > 0).sum(0).numpy()).all()
    assert torch.allclose(torch.from_numpy(st.top_vals), z.t().topk(4, dim=1).values.clamp_min(0), atol=1e-6)
    assert (st.hist.sum(1) == st.count).all()


def test_cli_dashboard(tmp_path, capsys):
    store, sae = _store_and_sae(tmp_path)
    sae.save_pretrained(tmp_path / "sae")
    (tmp_path / "sae" / "explanations.json").write_text(json.dumps({"2": {"explanation": "x", "score": 0.5}}))
    rc = cli_main(["sae", "dashboard", str(tmp_path / "sae"), "--store", str(store.path), "--out",
                   str(tmp_path / "site"), "--top", "3"])
    assert rc == 0 and "feature pages" in capsys.readouterr().out
    index = (tmp_path / "site" / "index.html").read_text()
    assert "&lt;script&gt;" in (tmp_path / "site" / "features" / "f00000.html").read_text()
    assert 'data-score="0.5"' in index


def _chromium(args, tmp, timeout=60):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_dashboard_in_headless_chromium(site, tmp_path):
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("chromium not found: install it with `apt-get install chromium` to run the browser test")
    index, _, _ = site
    # the index: JS ran (data-ready), sorted by density descending from the URL hash, search filters rows
    url = index.as_uri() + "#sort=density&q=fires"
    dom = _chromium(["--dump-dom", url], tmp_path).stdout
    assert 'data-ready="1"' in dom, dom[:2000]
    assert 'data-sort="density:desc"' in dom
    assert re.search(r"1 of \d+ features shown", dom)
    visible = re.findall(r'<tr data-id="(\d+)"[^>]*>', dom)
    hidden = re.findall(r'<tr data-id="(\d+)"[^>]*style="display: none;"', dom)
    assert len(visible) - len(hidden) == 1
    dom_all = _chromium(["--dump-dom", index.as_uri() + "#sort=density"], tmp_path).stdout
    rows = re.findall(r'<tr data-id="\d+" data-density="([0-9.e-]+)"', dom_all)
    dens = [float(x) for x in rows]
    assert len(dens) > 2 and dens == sorted(dens, reverse=True)
    # follow the first feature link of the rendered index
    href = re.search(r'<a href="(features/f\d+\.html)">', dom_all).group(1)
    page = (index.parent / href).resolve()
    fdom = _chromium(["--dump-dom", page.as_uri()], tmp_path).stdout
    assert "<h1>Feature " in fdom and "<svg" in fdom and 'class="ctx"' in fdom
    assert "<script" not in fdom  # the untrusted tokens stayed text
    f0 = _chromium(["--dump-dom", (index.parent / "features" / "f00000.html").as_uri()], tmp_path).stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in f0 and "<script" not in f0
    shot = tmp_path / "index.png"
    _chromium(["--screenshot=" + str(shot), "--window-size=1100,800", index.as_uri()], tmp_path)
    assert shot.is_file() and shot.stat().st_size > 1000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decoder_stats_nearest_direction(site):
    from isthmus.interp.dashboard import decoder_stats

    _, sae, _ = site
    st = decoder_stats(sae)
    w = torch.nn.functional.normalize(sae.W_dec.detach(), dim=1)
    cos = w @ w.t()
    cos.fill_diagonal_(-2)
    assert (st["nn_id"] == cos.argmax(1).numpy()).all()
    assert abs(st["nn_cos"] - cos.max(1).values.numpy()).max() < 1e-5

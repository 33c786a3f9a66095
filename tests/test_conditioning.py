"""The RGB conditioning token: shapes, what it carries, its numpy twin and its place in the checkpoint."""

import numpy as np
import pytest
import torch

from polycolor.polycolor_core.model.conditioning import (ColourToken, attach_colour_token, colour_token_numpy, condition,
                                                   fourier_features, load_token_weights, model_conditioning,
                                                   resolve_rgbs, token_weights)
from polycolor.polycolor_core.model.factory import create_model
from polycolor.polycolor_core.model.modelinfo import ModelInfo
from polycolor.polycolor_core.model.variants import get_variant


def _tiny(dim=32):
    torch.manual_seed(0)
    return create_model(get_variant("m1").tiny(), dim)


def test_resolve_rgbs_marks_unknown_names():
    rgb, ok = resolve_rgbs(["red", "#00ff80", "dark teal", "not a colour"])
    assert ok.tolist() == [True, True, True, False]
    assert np.allclose(rgb[1], [0, 1, 128 / 255]) and np.allclose(rgb[3], 0)


def test_fourier_features_are_smooth_in_colour():
    from polycolor.polycolor_core.model.conditioning import N_FREQ

    f = fourier_features(np.array([[0.5, 0.5, 0.5], [0.52, 0.5, 0.5], [0.9, 0.5, 0.5]], np.float32))
    assert f.shape == (3, 6 + 12 * N_FREQ) and np.allclose(f[0, :3], [0.5, 0.5, 0.5])
    near, far = np.linalg.norm(f[0] - f[1]), np.linalg.norm(f[0] - f[2])
    assert 0 < near < far / 5  # close colours get close features: what lets the token generalise to unseen ones
    assert fourier_features(np.zeros((1, 3), np.float32), 3).shape == (1, 6 + 36)


def test_text_model_is_unchanged_and_rgb_model_appends_one_token():
    model = _tiny()
    emb = torch.randn(3, 8, 32)
    assert model_conditioning(model) == "text" and condition(model, emb, ["red"] * 3) is emb
    attach_colour_token(model, "text+rgb")
    assert model_conditioning(model) == "text+rgb"
    out = condition(model, emb, ["red", "#102030", "nonsense"])
    assert out.shape == (3, 9, 32) and torch.equal(out[:, :8], emb)
    assert torch.equal(out[2, 8], model.colour_token.unknown)  # unresolvable: the learned unknown token
    assert not torch.allclose(out[0, 8], out[1, 8])
    # the UNet takes the longer sequence as it is
    assert model(torch.rand(3, 3, 32, 32), out).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="text, text\\+rgb"):
        attach_colour_token(model, "rgb-only")


def test_token_gets_gradients_from_the_unet_loss():
    model = attach_colour_token(_tiny(), "text+rgb")
    pred = model(torch.rand(2, 3, 32, 32), condition(model, torch.randn(2, 8, 32), ["teal", "gold"]))
    pred.square().mean().backward()
    assert model.colour_token.proj.weight.grad is not None and model.colour_token.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("conditioning", ["text+rgb", "text+rgb+film"])
def test_film_lets_the_colour_reach_the_top_level_that_has_no_cross_attention(conditioning):
    torch.manual_seed(0)
    model = attach_colour_token(create_model(get_variant("m1").tiny(), 32, conditioning=conditioning), conditioning)
    assert model_conditioning(model) == conditioning
    seen = []
    model.unet.down_blocks[0].register_forward_hook(lambda m, i, out: seen.append(out[0].detach()))  # DownBlock2D
    x, text = torch.rand(1, 3, 32, 32), torch.randn(1, 8, 32)
    with torch.no_grad():
        for name in ("red", "#2040f0"):  # the same text embedding, a different RGB token
            model(x, condition(model, text, [name]))
    changed = not torch.allclose(seen[0], seen[1])
    assert changed == (conditioning == "text+rgb+film")  # FiLM scales and shifts every ResNet block by the colour
    if conditioning == "text+rgb+film":
        assert model.unet.config.class_embed_type == "projection"
        assert model.unet.config.resnet_time_scale_shift == "scale_shift"


def test_numpy_twin_matches_torch():
    tok = ColourToken(32)
    holder = type("M", (), {"colour_token": tok})()
    names = ["red", "dusty rose", "#abcdef", "??"]
    with torch.no_grad():
        ref = tok(names).numpy()
    assert np.abs(colour_token_numpy(token_weights(holder), names) - ref).max() < 1e-5


def test_token_weights_round_trip_into_a_fresh_model():
    model = attach_colour_token(_tiny(), "text+rgb")
    with torch.no_grad():
        model.colour_token.unknown.fill_(0.25)
    saved = {**{k: v.clone() for k, v in model.unet.state_dict().items()}, **token_weights(model)}
    fresh = _tiny()
    rest = load_token_weights(fresh, saved)
    assert set(rest) == set(model.unet.state_dict())
    assert model_conditioning(fresh) == "text+rgb"
    assert torch.equal(fresh.colour_token.unknown, model.colour_token.unknown)
    assert load_token_weights(_tiny(), dict(model.unet.state_dict())).keys() == rest.keys()


def test_a_token_saved_with_other_frequencies_loads_as_it_was_saved():
    # checkpoints from before N_FREQ = 1 hold a [D, 6 + 12*6] projection: the loader reads the shape, not the default
    model = _tiny()
    model.colour_token = ColourToken(32, n_freq=6)
    saved = {**dict(model.unet.state_dict()), **token_weights(model)}
    fresh = _tiny()
    load_token_weights(fresh, saved)
    assert fresh.colour_token.n_freq == 6
    with torch.no_grad():
        assert torch.equal(fresh.colour_token(["teal", "#123456"]), model.colour_token(["teal", "#123456"]))


def test_training_batches_never_hold_a_heldout_name(tmp_path):
    from polycolor.polycolor_core.colour import palettes as P
    from polycolor.polycolor_core.training.trainio import TrainBatches

    batches = TrainBatches("synthetic:pose+shapes+dark", 32, 16, seed=5, augment=False,
                           colours="canonical+css+xkcd+hex", source_size=32)
    seen = [c for step in range(40) for c in batches.batch(step)[2]]
    held = set(P.heldout_names("css")) | set(P.heldout_names("xkcd"))
    assert not held & set(seen)
    assert not [c for c in seen if c.startswith("#") and P.is_eval_hex(c)]
    assert {c for c in seen if c in P.train_names("xkcd")} and {c for c in seen if c.startswith("#")}
    with pytest.raises(ValueError, match="drop --colours"):
        TrainBatches(str(tmp_path), 32, 4, 0, False, colours="xkcd")


def test_checkpoint_round_trips_palette_and_conditioning(tmp_path):
    from polycolor.polycolor_core.colour import palettes as P
    from polycolor.polycolor_core.model.checkpoint import load_checkpoint
    from polycolor.polycolor_core.model.modelinfo import ModelInfo
    from polycolor.polycolor_core.training.train import TrainConfig, config_from_profile, train

    cfg = config_from_profile("m1", "tiny", out=str(tmp_path / "run"), colours="canonical+xkcd+hex",
                              conditioning="text+rgb", data="synthetic:pose")
    res = train(cfg, progress=False)
    info = ModelInfo.read(res.checkpoint)
    assert info.conditioning == "text+rgb" and info.colours == "canonical+xkcd+hex"
    assert list(info.palette) == P.recorded_palette("canonical+xkcd+hex") and P.HEX_ENTRY in info.palette
    assert TrainConfig.from_dict(info.train_config).conditioning == "text+rgb"
    loaded = load_checkpoint(res.checkpoint)
    assert torch.equal(loaded.model.colour_token.proj.weight, res.model.colour_token.proj.weight.cpu())
    # a checkpoint written before issue 16 (no colours/conditioning in its train_config) reads as the study's
    old = dict(info.train_config)
    old.pop("colours"), old.pop("conditioning")
    assert TrainConfig.from_dict(old).conditioning == "text" and TrainConfig.from_dict(old).colours == ""


def test_palette_warning_names_the_palette():
    from polycolor.polycolor_core.colour.palettes import palette_warning, recorded_palette

    study = type("Info", (), {"palette": ("red", "green", "blue", "yellow", "cyan", "magenta", "purple", "orange"),
                              "colours": "", "conditioning": "text"})()
    assert palette_warning(study, ["red", "Green"]) is None
    msg = palette_warning(study, ["teal", "#12ab34", "red"])
    assert "'teal'" in msg and "'#12ab34'" in msg and "red, green, blue" in msg and "'red'" not in msg
    wide = type("Info", (), {"palette": tuple(recorded_palette("canonical+xkcd+hex")), "colours": "canonical+xkcd+hex",
                             "conditioning": "text+rgb"})()
    assert palette_warning(wide, ["cloudy blue", "#12ab34", "teal", "dusty rose"]) is None
    assert "'blorple'" in palette_warning(wide, ["blorple"]) and "canonical+xkcd+hex" in palette_warning(wide, ["blorple"])
    text_only = type("Info", (), {"palette": wide.palette, "colours": wide.colours, "conditioning": "text"})()
    assert "'cloudy blue'" in palette_warning(text_only, ["cloudy blue", "#12ab34"])  # held out: never shown


# --------------------------------------------------------------------------- inference surfaces (issue 16)

WIDE = "canonical+xkcd+hex"


@pytest.fixture(scope="module", params=["text+rgb", "text+rgb+film"])
def rgb_checkpoint(request, tmp_path_factory, checkpoint_factory):
    from polycolor.polycolor_core.colour.palettes import recorded_palette

    def edit(model):
        attach_colour_token(model, request.param)
        model.colour_token.proj.weight.normal_(0, 1.0)  # a token that matters for the output

    return checkpoint_factory(tmp_path_factory.mktemp("rgb") / "ck", edit=edit, palette=recorded_palette(WIDE),
                              train_config={"variant": "m1", "colours": WIDE, "conditioning": request.param})


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory, checkpoint_factory):
    return checkpoint_factory(tmp_path_factory.mktemp("txt") / "ck")


def _polygon(size=32):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(im).polygon([(6, 6), (26, 8), (16, 27)], outline=(0, 0, 0), width=1)
    return np.asarray(im)


def test_colorizer_appends_the_token_and_warns_outside_the_palette(rgb_checkpoint, text_checkpoint):
    import warnings

    from polycolor.export.colorizer import Colorizer

    col = Colorizer.from_pretrained(rgb_checkpoint, backend="torch", precision="fp32")
    assert col.info.conditioning.startswith("text+rgb") and col.token is not None
    assert col.info.conditioning == model_conditioning(col.backend.model)  # rebuilt as it was trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any resolvable name or code: no warning for this model
        a, b = col([_polygon(), _polygon()], ["#ff0000", "#0000ff"], output="raw")
    assert not np.array_equal(a, b)  # same text embedding family, different RGB token -> different output
    with pytest.warns(UserWarning, match="'blorple'.*canonical\\+xkcd\\+hex"):
        assert col.palette_warning(["blorple"])
        warnings.warn(col.palette_warning(["blorple"]), UserWarning)

    plain = Colorizer.from_pretrained(text_checkpoint, backend="torch", precision="fp32")
    assert plain.token is None
    with pytest.warns(UserWarning, match="'teal'.*red, green, blue"):
        res = plain.colorize([_polygon()], "teal")
    assert any("'teal'" in n for n in res.notes)


def test_onnx_export_carries_the_token_and_a_table_only_export_refuses_unknown_names(rgb_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from polycolor.export.colorizer import Colorizer
    from polycolor.export.onnx_export import export_model
    from polycolor.polycolor_core.colour.colours import UnknownColourError

    out = export_model(rgb_checkpoint, tmp_path / "exp")  # parity-checked with the [B, L+1, D] conditioning
    assert (out / "colour_token.safetensors").is_file()
    onnx = Colorizer.from_pretrained(out, backend="onnx")
    torch_col = Colorizer.from_pretrained(rgb_checkpoint, backend="torch", precision="fp32")
    assert onnx.info.conditioning == ModelInfo.read(rgb_checkpoint).conditioning
    x = _polygon()
    got = onnx([x], "red", output="raw")[0].astype(int)
    ref = torch_col([x], "red", output="raw")[0].astype(int)
    assert np.abs(got - ref).max() <= 2
    with pytest.raises(UnknownColourError, match="colour table"):  # the test encoder is not exportable: table only
        onnx([x], "#12ab34")


def test_cli_infer_warns_naming_the_palette(text_checkpoint, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from polycolor.cli import main

    (tmp_path / "in").mkdir()
    Image.fromarray(_polygon()).save(tmp_path / "in" / "a.png")
    res = CliRunner().invoke(main, ["infer", str(text_checkpoint), "--data", str(tmp_path / "in"), "--out",
                                    str(tmp_path / "out"), "--colour", "teal", "--backend", "torch"])
    assert res.exit_code == 0, res.output
    assert "warning: colour 'teal' not in the colours this model was trained on" in res.output
    assert "red, green, blue" in res.output
    ok = CliRunner().invoke(main, ["infer", str(text_checkpoint), "--data", str(tmp_path / "in"), "--out",
                                   str(tmp_path / "out2"), "--colour", "red", "--backend", "torch"])
    assert ok.exit_code == 0 and "warning:" not in ok.output


def test_comfyui_node_warns_naming_the_palette(text_checkpoint, caplog):
    import logging

    from polycolor.export.colorizer import Colorizer
    from polycolor.nodes.colorize import colorize  # the Polygon Colorize node's implementation (V3 execute calls it)

    col = Colorizer.from_pretrained(text_checkpoint, backend="torch", precision="fp32")
    image = torch.from_numpy(_polygon()[None].astype(np.float32) / 255.0)
    with caplog.at_level(logging.WARNING, logger="polycolor"), pytest.warns(UserWarning):
        colorize(col, image, "gold")
    assert any("'gold'" in r.getMessage() and "red, green, blue" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="polycolor"):
        colorize(col, image, "red")
    assert not [r for r in caplog.records if "trained on" in r.getMessage()]


def test_generalisation_table_reference_rows_on_a_tiny_model(text_checkpoint):
    from polycolor.eval.colours import colour_table, render_markdown
    from polycolor.export.colorizer import Colorizer

    col = Colorizer.from_pretrained(text_checkpoint, backend="torch", precision="fp32")
    table = colour_table([("tiny", col)], n_hex=4, limit=8)
    assert table["sets"] == {"canonical": 8, "css held-out": 8, "xkcd held-out": 8, "hex": 4}
    rows = {r["name"]: r["cells"] for r in table["rows"]}
    assert set(rows) == {"tiny", "nearest trained name", "resolved RGB"}
    for cell in rows["resolved RGB"].values():  # the exact colour: the ceiling
        assert cell["de00"] == 0.0 and cell["share_lt5"] == 1.0
    # a trained name's nearest trained name is itself; an unseen code is (almost surely) some other colour
    assert rows["nearest trained name"]["canonical"]["de00"] == 0.0
    assert rows["nearest trained name"]["hex"]["de00"] > 5
    assert all(np.isfinite(c["de00"]) for c in rows["tiny"].values()) and rows["tiny"]["canonical"]["de00"] > 0
    md = render_markdown(table)
    assert "| resolved RGB | 0.0 / 100% |" in md and "tiny (canonical / text)" in md


# --------------------------------------------------------------------------------- prompt templates (issue 16 b)


class _Recorder:
    """A text encoder that records what it was asked to encode (and embeds by length, so prompts differ)."""

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, prompts):
        self.seen += list(prompts)
        return np.stack([np.full((2, 3), len(p), np.float32) for p in prompts])


def test_prompt_template_is_what_the_encoder_reads_and_bad_templates_are_refused():
    from polycolor.polycolor_core.model.text import CachedTextEncoder
    from polycolor.polycolor_core.model.textspec import check_template, prompt_text

    rec = _Recorder()
    emb = CachedTextEncoder(rec, template="sentence")
    out = emb.numpy(["Teal", "teal", "#12AB34"])  # one key per colour: "teal" is encoded once
    assert rec.seen == ["a polygon filled with #12ab34", "a polygon filled with teal"]
    assert out.shape == (3, 2, 3) and out[0, 0, 0] == len("a polygon filled with teal")
    assert prompt_text(" Light Blue ", "{} paint") == "light blue paint"
    assert check_template("bare") == "{}"
    for bad in ("no slot", "{} and {}", "{0}", "{name}"):
        with pytest.raises(ValueError, match="exactly one"):
            check_template(bad)


def test_prompt_template_round_trips_through_the_checkpoint_and_the_colorizer(tmp_path):
    from polycolor.export.colorizer import Colorizer
    from polycolor.polycolor_core.model.modelinfo import ModelInfo
    from polycolor.polycolor_core.training.train import TrainConfig, config_from_profile, train

    cfg = config_from_profile("m1", "tiny", out=str(tmp_path / "run"), prompt_template="sentence")
    assert cfg.prompt_template == "a polygon filled with {}"
    res = train(cfg, progress=False)
    info = ModelInfo.read(res.checkpoint)
    assert info.prompt_template == "a polygon filled with {}"
    col = Colorizer.from_pretrained(res.checkpoint, backend="torch", precision="fp32")
    assert col.embeddings.template == "a polygon filled with {}"
    # the embedding the model gets at inference is the template's, not the bare name's
    bare = col.embeddings.encoder.encode(["red"]).numpy()
    sentence = col.embeddings.encoder.encode(["a polygon filled with red"]).numpy()
    assert np.allclose(col.embeddings.numpy(["red"]), sentence) and not np.allclose(bare, sentence)
    old = dict(info.train_config)
    old.pop("prompt_template")  # saved before templates: the bare name
    assert TrainConfig.from_dict(old).prompt_template == "{}"


def test_onnx_colour_table_holds_the_templated_embeddings(tmp_path, checkpoint_factory):
    pytest.importorskip("onnxruntime")
    from polycolor.export.colour_table import load_colour_table
    from polycolor.export.onnx_export import export_model
    from polycolor.polycolor_core.model.text import TinyRandomTextEncoder

    ck = checkpoint_factory(tmp_path / "ck", train_config={"variant": "m1", "prompt_template": "a polygon filled with {}"})
    out = export_model(ck, tmp_path / "exp")
    table = load_colour_table(out / "colour_table.safetensors")
    enc = TinyRandomTextEncoder()
    assert np.allclose(table["red"], enc.encode(["a polygon filled with red"]).numpy()[0])
    assert not np.allclose(table["red"], enc.encode(["red"]).numpy()[0])


def test_new_training_defaults_to_film_and_the_study_keeps_text():
    from polycolor.polycolor_core.training.trainconfig import TrainConfig, config_from_profile

    assert TrainConfig(variant="m8").conditioning == "text+rgb+film"  # what measured best (issue 16)
    assert all(config_from_profile(m, "report").conditioning == "text" for m in ("m1", "m5", "m8"))  # the study
    assert config_from_profile("m3", "cpu").conditioning == "text"  # the cpu profile's ablation is the study's
    assert config_from_profile("m8", "cpu").conditioning == "text+rgb+film"  # the everyday model

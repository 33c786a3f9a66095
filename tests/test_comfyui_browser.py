"""The pack as a person sees it: ComfyUI 0.3.75's own web page in headless Chromium, driven by Playwright.

The real ComfyUI that ``.ci/prepare_comfyui.sh`` prepares is started, in the Python a ComfyUI-Manager user has
(``.ci/prepare_comfyui_env.sh``), with the pack and a tiny m1 overfitted on the shipped example image
(``_comfyui_example.py``); ``example_workflows/polygon.png`` is put into its input
folder, as the README tells a user to. Debian's ``chromium`` (``/usr/bin/chromium``, or
``$POLYCOLOR_CHROMIUM``) opens the page at 1600x1000 with a fresh profile; every request that is not to
127.0.0.1 is aborted. Then, like a new user: the Templates browser (ComfyUI opens it by itself for a new user;
else the sidebar's Templates button) -> Extensions -> polycolor -> a template's card (its thumbnail must
load) opens the UI workflow; Run; wait for the saved image. Both templates, each in its own server: "polycolor"
(Polycolor Model Loader) and "polycolor_train" (Polycolor Train, whose named run is put in place finished, so
Run loads it: the node's training is tests/test_comfyui_train.py's). Asserted: no missing node types, every node input
in the workflow exists in the node's definition, widget values equal the file's, the colour box shows the
node's placeholder and tooltip, the saved view frames every node inside the canvas area with nothing over it,
the run succeeds, the saved image is cyan at the polygon's centre and untouched in the corners, and
no console error is caused by the pack. Screenshots (``templates.png``, ``loaded.png``, ``run.png``), the
console log and ``thumbnail.jpg`` (the run's input and output side by side: the template thumbnail; set
``POLYCOLOR_UPDATE_THUMBNAIL=1`` to write it to ``example_workflows/<template>.jpg``,
``POLYCOLOR_SCREENSHOTS=<folder>`` to keep each template's ``<template>-run.png``, and
``POLYCOLOR_EXAMPLE_MODEL=runs/m8`` to render it with a trained model instead) go to ``tmp_path``.

Skipped when ComfyUI, its Manager-built Python, Chromium or Playwright is missing, except under CI (env ``CI`` set), where that fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.slow, pytest.mark.comfyui]


import _comfyui as H  # noqa: E402 (the test harness: tests/conftest.py puts tests/ on sys.path)
import _comfyui_example as X  # noqa: E402

CHROMIUM = os.environ.get("POLYCOLOR_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1600, "height": 1000}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PACK_NAME = "polycolor"  # the Templates browser's entry for the pack (its custom_nodes folder name)
# the templates (example_workflows/<name>.json): each card's title and thumbnail (<name>.jpg)
TEMPLATES = [X.UI_WORKFLOW, X.EXAMPLE_DIR / "polycolor_train.json"]
PACK = re.compile(r"polycolor|polygon colorize", re.I)
# The frontend asks the Comfy Registry about the pack ids (cnr_id) of the loaded nodes; offline, ComfyUI's CSP
# blocks that. An artefact of running without internet, not of the pack.
OFFLINE = re.compile(r"^Connecting to 'https://api\.comfy\.org/[^']*' violates the following Content Security")
WAIT_MS = 60_000


def _missing(msg: str):
    if os.environ.get("CI"):
        pytest.fail(msg + " (CI must run this test: .ci/run installs chromium and playwright)")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def prerequisites():
    comfy, python = H.require_comfyui(_missing)  # ComfyUI and the Manager-built Python it runs in
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set POLYCOLOR_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install -e '.[dev]')")
    return comfy, python, sync_playwright


# ----------------------------------------------------------------------------------------- page probes

PROBE_JS = """() => { window.__pc = {missing: null};
  app.registerExtension({name: 'polycolor.test.probe',
    afterConfigureGraph(missing) { window.__pc.missing = JSON.parse(JSON.stringify(missing)); }}); }"""

# Every node as the page holds it: inputs, widgets, its definition's input names, its screen rectangle and
# what (other than the canvas or a node's own widget) covers it, sampled every 8 px.
GRAPH_JS = """() => {
  const ds = app.canvas.ds, c = app.canvas.canvas.getBoundingClientRect();
  const p = document.querySelector('.graph-canvas-panel').getBoundingClientRect();
  const describe = e => e.tagName + '.' + String(e.className || '').split(' ').slice(0, 3).join('.');
  return {panel: [p.left, p.top, p.right, p.bottom], nodes: app.graph._nodes.map(n => {
    const def = n.constructor.nodeData, b = n.getBounding();
    const r = [c.left + (b[0] + ds.offset[0]) * ds.scale, c.top + (b[1] + ds.offset[1]) * ds.scale];
    r.push(r[0] + b[2] * ds.scale, r[1] + b[3] * ds.scale);
    const covered = new Set();
    for (let x = r[0] + 2; x < r[2] - 2; x += 8) for (let y = r[1] + 2; y < r[3] - 2; y += 8) {
      const e = document.elementFromPoint(x, y);
      if (!e) covered.add('outside the window');
      else if (e !== app.canvas.canvas && !e.closest('.dom-widget')) covered.add(describe(e));
    }
    return {id: n.id, type: n.type, title: n.title, rect: r, covered: [...covered],
      inputs: (n.inputs || []).map(i => i.name),
      widgets: (n.widgets || []).filter(w => !w.name.startsWith('$$')).map(w => [w.name, w.value]),
      defined: def && def.input ? Object.keys({...(def.input.required || {}), ...(def.input.optional || {})}) : null};
  })};
}"""

COLOUR_BOX_JS = """() => [...document.querySelectorAll('.dom-widget textarea')].map(t =>
  ({placeholder: t.placeholder, value: t.value, title: t.closest('.dom-widget').title}))"""

SAVED_SHOWN_JS = """(id) => { const n = app.graph.getNodeById(id);
  return !!(n && n.imgs && n.imgs.length && n.imgs[0].complete && n.imgs[0].naturalWidth > 0); }"""


def _thumbnail(inp: Image.Image, out: Image.Image) -> Image.Image:
    """Input -> output, side by side on a 384x384 square (the Templates card is square)."""
    thumb = Image.new("RGB", (384, 384), "white")
    for img, x in ((inp, 12), (out, 204)):
        thumb.paste(img.convert("RGB").resize((168, 168), Image.LANCZOS), (x, 108))
        ImageDraw.Draw(thumb).rectangle((x - 1, 107, x + 168, 276), outline=(200, 200, 200))
    ImageDraw.Draw(thumb).polygon([(183, 182), (197, 192), (183, 202)], fill=(90, 90, 90))
    return thumb


def _open_template(page, log: list[str], template: str):
    """Templates browser -> Extensions -> polycolor; returns the ``template`` card."""
    nav = page.locator("nav [role=button]").filter(has_text=re.compile(f"^{PACK_NAME}$"))
    try:  # a new user gets the Templates browser on the first start
        nav.first.wait_for(state="visible", timeout=20_000)
        log.append("Templates browser opened by itself (new user)")
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: open it like a person
        page.locator(".side-tool-bar-container").get_by_text("Templates", exact=True).click()
        nav.first.wait_for(state="visible", timeout=WAIT_MS)
        log.append("Templates browser opened with the sidebar's Templates button")
    nav.first.click()
    card = page.locator(f"[data-testid=template-workflow-{template}]")
    card.wait_for(state="visible", timeout=WAIT_MS)
    # the card's image: the pack's thumbnail (as a blob: URL from the frontend's media cache), or the
    # frontend's default-template.png when the thumbnail failed to load
    page.wait_for_function(
        f"""() => {{ const i = document.querySelector('[data-testid=template-workflow-{template}] img');
        return !!i && i.complete && i.naturalWidth > 0; }}""", timeout=WAIT_MS)
    return card


def _check_loaded_graph(graph: dict, ui: dict) -> None:
    """The page's graph is the file's: same nodes, only inputs the definitions have, the file's widget values;
    and the saved view frames every node inside the canvas area (below the top bar) with nothing over it."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert sorted(nodes) == sorted(n["id"] for n in ui["nodes"]), "the template opened a different graph"
    for fnode in ui["nodes"]:
        node = nodes[fnode["id"]]
        assert node["type"] == fnode["type"]
        if node["defined"] is not None:  # frontend-only nodes (the note) have no definition
            unknown = [i["name"] for i in fnode["inputs"] if i["name"] not in node["defined"]]
            assert not unknown, (f"{fnode['type']} (node {fnode['id']}) in the template names "
                                 f"input(s) {unknown} that the node does not have: {node['defined']}")
            unknown = [i for i in node["inputs"] if i not in node["defined"]]
            assert not unknown, f"the page's {fnode['type']} has unknown inputs {unknown}"
        assert [v for _, v in node["widgets"]] == fnode["widgets_values"], (fnode["type"], node["widgets"])
    left, top, right, bottom = graph["panel"]
    for node in graph["nodes"]:
        x0, y0, x1, y1 = node["rect"]
        assert left <= x0 and top <= y0 and x1 <= right and y1 <= bottom, (
            f"{node['title']!r} at {[round(v) for v in node['rect']]} is not inside the canvas area "
            f"{[round(v) for v in graph['panel']]} at {VIEWPORT['width']}x{VIEWPORT['height']}")
        assert not node["covered"], f"{node['title']!r} is partly covered by {node['covered']}"


def _check_saved_pixels(got: np.ndarray, inp: np.ndarray) -> None:
    """Cyan at the polygon's centre (12x12 px); the four 12x12 corners exactly as in the input."""
    h, w = got.shape[:2]
    centre = got[h // 2 - 6:h // 2 + 6, w // 2 - 6:w // 2 + 6]
    centre_err = np.abs(centre - np.array(X.CYAN)).mean()
    assert centre_err < 20, f"the polygon's centre is not cyan: mean |diff| {centre_err:.1f}, {centre.mean((0, 1))}"
    corners = {"top-left": (slice(0, 12), slice(0, 12)), "top-right": (slice(0, 12), slice(-12, None)),
               "bottom-left": (slice(-12, None), slice(0, 12)), "bottom-right": (slice(-12, None), slice(-12, None))}
    for name, (ys, xs) in corners.items():
        # the workflow's output=composite pastes only the fill: every other pixel stays as it was
        corner_err = np.abs(got[ys, xs] - inp[ys, xs]).max()
        assert corner_err == 0, f"the {name} corner changed: max |diff| from the input {corner_err}"


# ----------------------------------------------------------------------------------------- the test


@pytest.mark.parametrize("workflow", TEMPLATES, ids=[w.stem for w in TEMPLATES])
def test_example_workflow_in_the_browser(prerequisites, tmp_path, workflow):
    comfy_dir, python, sync_playwright = prerequisites
    template, thumbnail = workflow.stem, workflow.with_suffix(".jpg")
    t0 = time.monotonic()
    ckpt = X.example_model(tmp_path / "train", tmp_path / "models")
    t_train = time.monotonic() - t0
    inp, _, _, _ = X.example()
    ui = json.loads(workflow.read_text())
    trainer = next((n for n in ui["nodes"] if n["type"] == "PolycolorTrain"), None)
    if trainer is not None:  # "train then colour": the run its Polycolor Train names is already finished,
        # so Run loads it (training itself is tests/test_comfyui_train.py's)
        shutil.copytree(ckpt.parent, tmp_path / "models" / trainer["widgets_values"][0])
    console: list[dict] = []
    blocked: list[str] = []
    notes: list[str] = []

    server = H.start_server(comfy_dir, X.REPO_ROOT, ckpt.parents[1], timeout=180, node_name="polycolor",
                            work_dir=tmp_path / "comfy", python=python)
    try:
        shutil.copy(X.INPUT_IMAGE, server.input_dir / X.INPUT_IMAGE.name)
        info = H.object_info(server.url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport=VIEWPORT)

            def only_local(route):
                if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1":
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            context.route("**/*", only_local)
            page = context.new_page()
            thumbs_served: list[int] = []
            page.on("response", lambda r: thumbs_served.append(r.status) if r.url.endswith(
                f"/api/workflow_templates/polycolor/{thumbnail.name}") else None)
            page.on("console", lambda m: console.append(
                {"type": m.type, "text": m.text, "url": (m.location or {}).get("url", "")}))
            page.on("pageerror", lambda e: console.append(
                {"type": "pageerror", "text": f"{e}\n{getattr(e, 'stack', '')}", "url": ""}))
            try:
                page.goto(server.url, timeout=WAIT_MS)
                page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=WAIT_MS)
                page.evaluate(PROBE_JS)

                # --- the Templates entry: titled "polycolor", with a thumbnail, opens a non-empty graph ---
                card = _open_template(page, notes, template)
                page.screenshot(path=str(tmp_path / "templates.png"))
                assert card.locator("h3").inner_text().strip() == template
                thumb = card.locator("img").first.evaluate("i => [i.src, i.naturalWidth, i.naturalHeight]")
                assert thumbs_served == [200], f"GET .../{thumbnail.name} answered {thumbs_served}"
                assert "default" not in thumb[0] and tuple(thumb[1:]) == Image.open(thumbnail).size, (
                    f"the card shows {thumb}, not the pack's thumbnail {thumbnail.name}")
                card.click()
                page.wait_for_function("() => window.__pc.missing !== null", timeout=WAIT_MS)
                page.wait_for_timeout(1000)  # let DOM widgets settle before the screenshot
                page.screenshot(path=str(tmp_path / "loaded.png"))
                assert page.evaluate("() => window.__pc.missing") == [], "the UI workflow has missing nodes"
                _check_loaded_graph(page.evaluate(GRAPH_JS), ui)

                # --- the colour box says what it accepts ---
                spec = info["PolycolorColorize"]["input"]["required"]["colour"][1]
                boxes = [b for b in page.evaluate(COLOUR_BOX_JS) if b["value"] == "cyan"]
                assert len(boxes) == 1, boxes
                assert boxes[0]["placeholder"] == spec["placeholder"] and boxes[0]["title"] == spec["tooltip"]
                for form in ("all images", "one line per image", "#rrggbb"):
                    assert form in spec["placeholder"], (form, spec["placeholder"])

                # --- Run, as a person: the button; the server must accept the prompt and finish it ---
                with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST",
                                          timeout=WAIT_MS) as queued:
                    page.get_by_role("button", name="Run", exact=True).click()
                t_run = time.monotonic()
                answer = queued.value.json()
                assert queued.value.status == 200 and "prompt_id" in answer, f"Run was rejected: {answer}"
                entry = H.wait_history(server.url, answer["prompt_id"], timeout=240, server=server)
                t_run = time.monotonic() - t_run
                save_id = next(n["id"] for n in ui["nodes"] if n["type"] == "SaveImage")
                page.wait_for_function(SAVED_SHOWN_JS, arg=save_id, timeout=WAIT_MS)
                page.wait_for_timeout(500)
                page.screenshot(path=str(tmp_path / "run.png"))
                if os.environ.get("POLYCOLOR_SCREENSHOTS"):  # a folder to keep each template's screenshot after Run
                    shots = Path(os.environ["POLYCOLOR_SCREENSHOTS"])
                    shots.mkdir(parents=True, exist_ok=True)
                    shutil.copy(tmp_path / "run.png", shots / f"{template}-run.png")
                (saved,) = H.get_output_images(server.url, entry, node_ids=[save_id])
            except BaseException:
                page.screenshot(path=str(tmp_path / "failure.png"))  # what the page showed when it failed
                raise
            browser.close()
    finally:
        rc = server.stop()
        (tmp_path / "console.txt").write_text(
            "\n".join(f"[{m['type']}] {m['text']} ({m['url']})" for m in console)
            + "\nblocked:\n" + "\n".join(blocked) + "\n", encoding="utf-8")
    assert rc is not None, f"ComfyUI (pid {server.pid}) did not stop"

    # --- the saved image: cyan at the polygon's centre, the corners untouched ---
    out = saved.to_pil().convert("RGB")
    assert saved.filename.startswith("polycolor") and out.size == inp.size
    _check_saved_pixels(np.asarray(out).astype(np.int16), np.asarray(inp).astype(np.int16))

    # --- no console error caused by the pack (the rest is ComfyUI's own offline noise, kept in console.txt) ---
    errors = [m for m in console if m["type"] in ("error", "pageerror")]
    from_pack = [m for m in errors if PACK.search(m["text"] + m["url"]) and not OFFLINE.search(m["text"])]
    assert not from_pack, "console errors caused by the pack:\n" + "\n".join(m["text"] for m in from_pack)
    assert not [u for u in blocked if PACK.search(u)], blocked

    thumb_img = _thumbnail(inp, out)
    thumb_img.save(tmp_path / "thumbnail.jpg", quality=90)
    if os.environ.get("POLYCOLOR_UPDATE_THUMBNAIL") == "1":
        tmp = thumbnail.with_name(thumbnail.name + ".tmp")
        thumb_img.save(tmp, format="JPEG", quality=90)
        os.replace(tmp, thumbnail)
    if trainer is not None:
        log = server.log_tail(400000)
        assert "polycolor: training" not in log and "polycolor: continuing" not in log, "a finished run was retrained"
    print(f"\n[polycolor] browser test: overfit training {t_train:.1f}s, Run -> saved image {t_run:.1f}s, "
          f"whole test {time.monotonic() - t0:.1f}s; {'; '.join(notes)}; {len(errors)} console errors "
          f"(none from the pack), {len(blocked)} blocked requests; screenshots in {tmp_path}")

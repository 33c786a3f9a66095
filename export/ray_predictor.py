"""Ray Data: colour a ``ray.data.Dataset`` on many machines with ``ColorizePredictor`` (``pip install "polycolor[ray]"``).

    import ray
    from polycolor.export.ray_predictor import ColorizePredictor

    ds = ray.data.from_items([{"image": img, "colour": "cyan"} for img in images])   # or read_images(...) + a colour column
    out = ds.map_batches(
        ColorizePredictor,
        fn_constructor_kwargs={"model": "runs/m8"},        # loaded once per actor, in __init__
        compute=ray.data.ActorPoolStrategy(size=4),        # Ray 2.60's way (``concurrency=`` is deprecated)
        batch_size=16,
        num_cpus=1,                                         # or num_gpus=1: the actor then uses its GPU (cuda)
    )
    for row in out.iter_rows():                             # row["image"]: coloured RGB uint8, row["mask"]: bool
        ...

``ColorizePredictor.__call__`` takes a batch ``{"image": images, "colour": names, ...}`` (uint8 [H,W,3] arrays of
any size, or paths) and returns the same batch with ``image`` coloured and a ``mask`` column (the fill mask);
other columns pass through. It is a thin shell around the one ``Colorizer``: the same pixels as any other path.

``polycolor infer --engine ray`` (``run_ray``) uses a subclass that reads each item itself (a path, or a row of a
Hugging Face dataset) and returns the encoded output; the driver writes the files and the manifest
(``outputs.OutputStore``), so outputs, names and resumption are those of a local run. Workers on other machines
must see the input paths (and the model folder) at the same place; the outputs are written by the driver.
"""

from __future__ import annotations

import json
import time

import numpy as np

from .items import _Item, load_item, plan_items
from .outputs import encode_image

__all__ = ["ColorizePredictor", "run_ray"]

RAY_MISSING = 'Ray Data is not installed: pip install "polycolor[ray]" (or pip install "ray[data]>=2.60")'


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ImportError(RAY_MISSING) from exc
    return ray


def _column(arrays: list) -> np.ndarray:
    """One batch column from per-row arrays: stacked when they share a shape, else an object array (ragged)."""
    if arrays and all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    col = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        col[i] = a
    return col


class ColorizePredictor:
    """A callable class for ``ray.data.Dataset.map_batches``: loads the model once per actor.

    model: a run / checkpoint / export folder every worker can read. device: None = "cuda" when Ray gave the
    actor a GPU (``num_gpus=1``), else "cpu". threads: CPU threads per actor (default: the actor's ``num_cpus``,
    at least 1). The other arguments are ``Colorizer.from_pretrained``'s.
    """

    def __init__(self, model, *, backend: str = "auto", device: str | None = None, precision: str = "auto",
                 batch_size: int = 16, output: str = "composite", threads: int | None = None, zoom: bool = True):
        from .colorizer import Colorizer

        if device is None:
            device = "cuda" if _gpu_ids() else "cpu"
        if threads is None and device == "cpu":
            threads = max(1, int(_ray().get_runtime_context().get_assigned_resources().get("CPU", 1)))
        self.output = output
        self.colorizer = Colorizer.from_pretrained(model, backend=backend, device=device, precision=precision,
                                                   batch_size=batch_size, threads=threads, output=output, zoom=zoom)

    def __call__(self, batch: dict) -> dict:
        colours = [str(c) for c in batch["colour"]]
        res = self.colorizer.colorize(list(batch["image"]), colours, output=self.output)
        out = {k: v for k, v in batch.items() if k != "image"}
        out["image"] = _column(res.images)
        out["mask"] = _column(res.masks)
        return out


def _gpu_ids() -> list:
    try:
        return list(_ray().get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside a Ray worker: no GPU assigned
        return []


class _InferActor(ColorizePredictor):
    """``polycolor infer --engine ray``'s actor: rows name their input (path or dataset row); returns the encoded
    output per row (or the reason it could not be made) and its notes."""

    def __init__(self, model, data: str = "", **kw):
        super().__init__(model, **kw)
        self.samples = plan_items(data).samples if data.startswith("hf:") else None

    def __call__(self, batch: dict) -> dict:
        from ..polycolor_core.data.imageio import ImageInputError

        n = len(batch["key"])
        data, errors, notes = [b""] * n, [""] * n, [[] for _ in range(n)]
        ok, arrays = [], []
        size = self.colorizer.image_size
        for i in range(n):
            src = str(batch["source"][i])
            it = _Item(str(batch["label"][i]), src or None, str(batch["colour"][i]), str(batch["output"][i]),
                       row=int(batch["row"][i]))
            try:
                img, note = load_item(it, self.samples)
            except ImageInputError as exc:
                errors[i] = str(exc)
                continue
            if note:
                notes[i].append(note.replace(src, it.label) if src else note)
            h, w = img.shape[:2]
            if (h, w) != (size, size):
                notes[i].append(f"{w}x{h} resized to the model's {size}x{size} (letterboxed) and the output back "
                                f"to {w}x{h}")
            ok.append(i)
            arrays.append(img)
        if ok:
            import warnings

            with warnings.catch_warnings():  # the driver reports the palette warning once for the job
                warnings.simplefilter("ignore", UserWarning)
                res = self.colorizer.colorize(arrays, [str(batch["colour"][i]) for i in ok], output=self.output)
            for i, img in zip(ok, res.images):
                data[i] = encode_image(img, str(batch["output"][i]))
        col = np.empty(n, dtype=object)
        col[:] = data
        return {"key": np.asarray(batch["key"]), "data": col, "error": np.array(errors, dtype=object),
                "notes": np.array([json.dumps(x) for x in notes], dtype=object)}


def run_ray(model, pending: list, store, plan, *, output: str, backend: str, device: str, precision: str,
            batch_size: int, workers: int | None, threads: int | None, progress: bool):
    """Colour ``pending`` with a pool of Ray Data actors and write what they return through ``store``:
    (written, skipped, stats), the first two as ``infer._run_local`` returns them; stats: workers, seconds to
    start Ray, to the first output (actors starting, loading the model, first batch) and the steady img/s after.
    Joins the running Ray cluster (``RAY_ADDRESS``) or starts a local one."""
    ray = _ray()
    if not pending:
        return [], [], {}
    t0 = time.perf_counter()
    if not ray.is_initialized():
        ray.init(log_to_driver=False)
    t_init = time.perf_counter()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    gpu = device.startswith("cuda")
    per_actor = 0 if gpu else max(1, int(threads or 1))
    if workers is None:
        res = ray.cluster_resources()
        workers = max(1, int(res.get("GPU", 1)) if gpu else int(res.get("CPU", 1)) // per_actor)
    rows = [{"key": k, "source": str(it.source or ""), "row": it.row, "colour": it.colour, "output": it.output,
             "label": it.label} for k, it in enumerate(pending)]
    ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), max(1, workers) * 4))
    out = ds.map_batches(
        _InferActor,
        fn_constructor_args=(str(model),),
        fn_constructor_kwargs={"data": plan.path if plan.layout == "hf" else "", "backend": backend,
                               "device": "cuda" if gpu else "cpu", "precision": precision,
                               "batch_size": batch_size, "output": output, "threads": per_actor or None},
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=batch_size,
        num_cpus=per_actor or None,
        num_gpus=1 if gpu else None,
        batch_format="numpy",
    )
    written, skipped, first = [], [], None
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        if first is None:
            first = (time.perf_counter(), len(batch["key"]))
        for key, data, error, notes in zip(batch["key"], batch["data"], batch["error"], batch["notes"]):
            it = pending[int(key)]
            if error:
                skipped.append({"input": it.label, "colour": it.colour, "reason": str(error)})
                continue
            it.notes.extend(json.loads(str(notes)))
            try:
                store.write(it.output, bytes(data), it.colour, it.digest, it.label)
            except OSError as exc:
                skipped.append({"input": it.label, "colour": it.colour,
                                "reason": f"could not write {store.out_dir / it.output}: {exc}"})
                continue
            written.append({"input": it.label, "colour": it.colour, "output": it.output, "notes": it.notes})
    order = {it.output: k for k, it in enumerate(pending)}  # output names are unique: report in the job's order
    written.sort(key=lambda w: order[w["output"]])
    end = time.perf_counter()
    stats = {"workers": workers, "ray_init_s": round(t_init - t0, 3),
             "first_output_s": round(first[0] - t_init, 3) if first else None,
             "steady_images_per_s": round((len(pending) - first[1]) / (end - first[0]), 3)
             if first and end > first[0] and len(pending) > first[1] else None}
    return written, skipped, stats

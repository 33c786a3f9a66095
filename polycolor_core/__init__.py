"""polycolor_core: everything the faces share, in rooms by job. Depends on nothing else in the pack; ``export``,
``eval`` and ``nodes`` build on it.

- ``data/``      the synthetic generator and its families, the original folder layout, Hugging Face datasets,
                 paired augmentation, safe image reading (``imageio``)
- ``colour/``    colour names: resolution of names and hex codes, training palettes, the packaged colour tables
- ``model/``     the variant registry (``variants``), the one factory (``factory.create_model``), text encoders
                 and conditioning, checkpoints and the one model-folder reader (``modelinfo.ModelInfo``),
                 compositing the fill into the user's image
- ``training/``  ``TrainConfig`` and the profiles, the training loop (``train``), the composite loss and LPIPS,
                 the precision choice, the training batches
- ``runtime/``   devices and distributed setup, precision probes, the cache, atomic writes, folder locks

Submodules are imported on demand (``from polycolor.polycolor_core.model import variants``) so that importing the
package stays cheap. ``__version__`` lives here (the root package re-exports it) so the core never imports
the root package.
"""

__version__ = "0.1.0"

"""polycolor_core: data, the eight model variants, text encoders, the composite loss, training, checkpoints,
the model-folder reader (``modelinfo.ModelInfo``) and the PyTorch model. Depends on nothing else in the pack;
``export``, ``eval`` and ``nodes`` build on it.

Submodules are imported on demand (``from polycolor.polycolor_core import variants``) so that importing the
package stays cheap. ``__version__`` lives here (the root package re-exports it) so the core never imports
the root package.
"""

__version__ = "0.1.0"

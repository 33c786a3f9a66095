"""polycolor.eval: the leaderboard, one module per job (no import cycles; each imports only those above it).

* ``schema``      - the metric table, sort keys, and the row / LPIPS records of the leaderboard JSON.
* ``selection``   - parsing model selections such as ``m1..m8``, ``m2,m4,m8`` or paths to runs/exports.
* ``models``      - finding the selected models (``<runs>/m3/checkpoint``, exports), loading and describing them.
* ``heldout``     - the held-out synthetic split (seed 20241129; user-input families opt-in, at their own
                    size) or a data folder / spec to score on.
* ``metrics``     - pure numpy/scikit-image metrics on uint8 RGB images: CIEDE2000 maps and colour errors,
                    true / predicted polygon masks and their IoU, SSIM, PSNR, background changed, and
                    ``LpipsScorer`` (lazy torch).
* ``baseline``    - the classical reference "flood fill from the border with the named colour".
* ``scoring``     - predict with one model (raw and / or composite output) or the reference, per-sample
                    metrics, means per family.
* ``report``      - JSON / CSV / markdown / contact-sheet outputs (``write_outputs``) and the shared cell formats.
* ``render``      - the rich terminal table (``polycolor-eval``, ``polycolor reproduce``).
* ``leaderboard`` - ``run_leaderboard``: score every model, rank, return a ``Leaderboard``.
* ``cli``         - ``polycolor-eval``: parses options, calls ``run_leaderboard``, renders.
* ``colours``     - the colour-generalisation table (canonical, held-out CSS / XKCD names, hex codes).

Nothing heavy is imported here; import the submodules you need (``from polycolor.eval import metrics``).
"""

"""polycolor.eval: the leaderboard's scoring pieces.

* ``metrics``   - pure numpy/scikit-image metrics on uint8 RGB images: CIEDE2000 maps and colour errors,
                  true / predicted polygon masks and their IoU, SSIM, PSNR, and ``LpipsScorer`` (lazy torch).
* ``baseline``  - the classical reference "flood fill from the border with the named colour".
* ``selection`` - parsing model selections such as ``m1..m8``, ``m2,m4,m8`` or paths to runs/exports.

Nothing heavy is imported here; import the submodules you need (``from polycolor.eval import metrics``).
"""

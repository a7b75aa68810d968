"""Procedural laparoscopic scene: the demo video source and desmoking ground truth.

:class:`LaparoscopicScene` renders frame ``index`` of an endless synthetic
laparoscope video as a :class:`SceneFrame`: the smoky view, the same view
without smoke, and the smoke density that relates the two by the scattering
model of :mod:`smokeclear.synthetic.smoke`, ``I = J * (1 - d) + A * d``.

Everything random is drawn once in the constructor, so :meth:`LaparoscopicScene.render`
is a pure function of the constructor arguments and the frame index: frames can
be rendered in any order, which training on random indices needs. The scene
repeats every :data:`LOOP_PERIOD_S` seconds, and seamlessly: every motion
frequency is a whole number of cycles per loop and the smoke schedule wraps.

The renderer works in "diagonal units" (lengths as fractions of the frame
diagonal), so a seed gives the same scene at every size of one aspect ratio:
64x36 shows what 1920x1080 shows, only coarser.

A frame is built from, back to front:

* tissue: organ regions with creases, colour variation, blood vessels, fine
  grain and wet specular highlights, precomputed as one texture larger than the
  frame and viewed through a slowly panning, zooming, breathing camera;
* an instrument: a cylindrical metal shaft from the frame edge with a two-jaw
  tip moving on a Lissajous path;
* the scope optics: light falloff towards a dark circular border;
* smoke: puffs emitted at the jaw tip while the cautery is on, which rise,
  spread and fade, shaped by scrolling noise, over a faint haze that builds up
  with cautery use and clears slowly.

``render(index, highlights=False)`` leaves out the specular highlights (the wet
tissue's and the instrument's) and nothing else: with ``render(index)`` it
makes a ground-truth pair for highlight removal.

One module per part: :mod:`.primitives` (loop-periodic signals, wrapping noise,
sub-pixel drawing), :mod:`.tissue`, :mod:`.optics`, :mod:`.instrument`,
:mod:`.plumes` (the smoke) and :mod:`.laparoscopic` (the scene that composes them).
"""

from smokeclear.synthetic.scene.laparoscopic import (
    MIN_FRAME_SIDE,
    MIN_TEXTURE_DETAIL_WIDTH,
    TEXTURE_MARGIN,
    LaparoscopicScene,
    SceneFrame,
)
from smokeclear.synthetic.scene.plumes import MAX_SMOKE_DENSITY, SMOKE_DOWNSCALE
from smokeclear.synthetic.scene.primitives import LOOP_PERIOD_S

__all__ = [
    "LOOP_PERIOD_S",
    "MAX_SMOKE_DENSITY",
    "MIN_FRAME_SIDE",
    "MIN_TEXTURE_DETAIL_WIDTH",
    "SMOKE_DOWNSCALE",
    "TEXTURE_MARGIN",
    "LaparoscopicScene",
    "SceneFrame",
]

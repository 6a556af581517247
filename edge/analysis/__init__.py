"""Analysis: what the node judges on a masked frame.

`motion` (changed regions), `track` and `rules` (people in zones: intrusion,
loitering, with `vaktpost.contract.schedule` deciding when a zone is armed), `tamper` (covered,
defocused, moved, signal lost) and `scene_change` (lasting changes). Stages share
image helpers from `imageops`, frame checks and clocks from `frames`, and box math
from `vaktpost.edge.geometry`; they never import each other's internals.
"""

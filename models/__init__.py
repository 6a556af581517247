"""The model files the node ships with (ONNX), and their manifest.

This folder is installed as the package data of `vaktpost.models`; its rebuild
scripts in `rebuild/` are not. The node finds the files through `DIR`.
"""

from pathlib import Path

DIR = Path(__file__).resolve().parent

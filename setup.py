"""Build script: the pure-Python package plus the optional compiled NMS extension.

Install with ``pip install --no-build-isolation -e .`` so the build uses the torch already
installed (build isolation would download a CUDA torch). The extension is owned by csrc/.
"""
from setuptools import setup

setup()

"""Sphinx configuration of the skrobust documentation.

Build with ``make -C docs html`` (warnings are errors; see ``docs/Makefile``).
The build needs no network: no intersphinx inventories are fetched and no
remote images are used; the gallery examples run during the build.
"""

import inspect
import os
import re
from pathlib import Path

import matplotlib
import sphinx_gallery
from sphinx.util import logging

import skrobust
import skrobust.demo
import skrobust.losses
import skrobust.metrics

# The examples must not open windows while the gallery runs them.
matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")

DOCS = Path(__file__).resolve().parent

project = "skrobust"
author = "The skrobust developers"
copyright = "The skrobust developers"  # noqa: A001 - the name Sphinx reads
version = skrobust.__version__
release = skrobust.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax served with the site rather than from a CDN, so that the maths
    # renders offline (checked in a browser by docs/check_rendered.py).
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "sg_execution_times.rst"]
default_role = "literal"

# -- autodoc / autosummary / numpydoc -----------------------------------------
autosummary_generate = True
autodoc_default_options = {"member-order": "bysource"}
# The API pages list their members through autodoc (see
# _templates/autosummary/class.rst); numpydoc's own member tables would
# point at pages that do not exist.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
# No network at build time, so no intersphinx: references to scikit-learn
# and scipy render as code, not links.

# -- sphinx-gallery -------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Run every plot_*.py; the others (none yet) would only be rendered.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|_data\.py",
    "plot_gallery": "True",
    "doc_module": ("skrobust",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skrobust": None},
    "image_scrapers": ("matplotlib",),
    "remove_config_comments": True,
    "min_reported_time": 0,
    # A failing example fails the build (with the traceback).
    "abort_on_example_error": True,
    "show_signature": False,
    # The execution-times page loads jQuery and DataTables from a CDN,
    # which fails offline; build times are in the build log.
    "write_computation_times": False,
}
# Examples in file-name order. Older sphinx-gallery only accepts a class
# here, which Sphinx then warns it cannot pickle; newer ones take the name.
if tuple(int(part) for part in sphinx_gallery.__version__.split(".")[:2]) >= (0, 17):
    sphinx_gallery_conf["within_subsection_order"] = "FileNameSortKey"

# -- HTML -------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skrobust {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
# Without a default mode a first visit logs "Got invalid theme mode" as a
# console error (the theme's template default is an empty mode).
html_context = {"default_mode": "auto"}
html_sidebars = {"changelog": [], "contributing": [], "benchmarks": []}
html_show_sourcelink = False
# A favicon of our own: without one the browser's request for
# /favicon.ico fails, which shows as a console error.
html_favicon = "_static/favicon.svg"

# -- docstring rendering ----------------------------------------------------------
_logger = logging.getLogger(__name__)

# In reST a word ending in "_" is a hyperlink reference, so the shape
# notation "(n_features_in_,)" of scikit-learn-style docstrings would be an
# "Unknown target name" error. Render such names in shape descriptions as
# code instead, which keeps the docstrings readable in help() as well.
_SHAPE_NAME_WITH_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?=\s*[,)])")


def _quote_underscore_names_in_shapes(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        if "shape (" in line:
            head, _, shape = line.partition("shape (")
            lines[i] = (
                head + "shape (" + _SHAPE_NAME_WITH_UNDERSCORE.sub(r"``\1``", shape)
            )


# -- consistency checks ---------------------------------------------------------


def _public_names(module):
    """``__all__``, or the classes and functions a module defines without a ``_``."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    ]


def _check_api_reference_lists_every_public_name(app):
    """Warn (an error under -W) when a public name is missing from api.rst.

    The API reference is written by hand; this keeps it from falling behind
    the package: every name in ``skrobust.__all__`` and every public class
    and function of the public modules must be listed.
    """
    listed = set(re.findall(r"^\s+(\w+)\s*$", (DOCS / "api.rst").read_text(), re.M))
    for module in (skrobust, skrobust.losses, skrobust.metrics, skrobust.demo):
        for name in _public_names(module):
            if name not in listed:
                _logger.warning(
                    "%s.%s is public but not listed in docs/api.rst",
                    module.__name__,
                    name,
                )


def setup(app):
    # Before numpydoc (priority 500) parses the sections.
    app.connect(
        "autodoc-process-docstring", _quote_underscore_names_in_shapes, priority=400
    )
    app.connect("builder-inited", _check_api_reference_lists_every_public_name)

"""The web page, one module per tab; `app.py` serves what `layout.build_demo` builds.

- `session`: what one visitor owns (their best model, curves, runs), kept in `gr.State`;
- `inputs`: widget values -> core configs, and user mistakes -> messages on the page;
- `build_tab`, `mask_tab`, `train_tab`, `sample_tab`, `inside_tab`: each tab's widgets, its
  handlers (plain functions that tests call without a server) and the events that join them;
- `layout`: the page from those tabs.

The page imports core; core never imports the page or gradio.
"""

import importlib.abc
import importlib.machinery
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls to outside hosts, ever (before gradio loads)


def _no_stub_rewrite(*args, **kwargs) -> None:
    """Stands in for gradio's `create_or_modify_pyi` (see _SkipGradioStubRewrite)."""


class _SkipGradioStubRewrite(importlib.abc.MetaPathFinder):
    """Loads gradio without rewriting its type stubs, which is half of gradio's import time.

    As each component class is defined, gradio parses its module's source and rewrites the
    `.pyi` stub beside it, for editors' autocompletion: on every import, installed or not. That
    took 1.1 of gradio's 2.2 s import on 2 cores, and `python app.py` must answer within 3 s.
    Serving never reads the stubs (the wheel ships them). This finder waits for gradio to load
    `gradio.component_meta`, then replaces that one function; if gradio renames it, nothing
    changes but the time.
    """

    def find_spec(self, name, path, target=None):
        if name != "gradio.component_meta":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module) -> None:
            load(module)
            if hasattr(module, "create_or_modify_pyi"):
                module.create_or_modify_pyi = _no_stub_rewrite

        spec.loader.exec_module = exec_module
        return spec


if "gradio" not in sys.modules:
    sys.meta_path.insert(0, _SkipGradioStubRewrite())

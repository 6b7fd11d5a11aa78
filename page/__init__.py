"""The web page, one module per tab; `app.py` serves what `layout.build_demo` builds.

- `session`: what one visitor owns (their best model, curves, runs), kept in `gr.State`;
- `inputs`: widget values -> core configs, and user mistakes -> messages on the page;
- `build_tab`, `mask_tab`, `train_tab`, `sample_tab`, `inside_tab`: each tab's widgets, its
  handlers (plain functions that tests call without a server) and the events that join them;
- `layout`: the page from those tabs.

The page imports core; core never imports the page or gradio.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls to outside hosts, ever (before gradio loads)

"""The shipped training recipes, as package data: this folder installs as ``cirbench.recipes``
(setup.py maps it, as ``baselines/`` maps to ``cirbench.baselines``), so a wheel carries them and
``cirbench train --recipe fashionblip2/stage1_facap_tiny`` finds them from any folder
(``cirbench.config.shipped_recipes``). The recipes and their schema: README.md here."""

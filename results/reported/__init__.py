"""The paper's printed numbers, as package data: this folder installs as ``cirbench.reported``
(setup.py maps it), so ``cirbench table --reported`` works from a wheel. What each file holds:
README.md here."""

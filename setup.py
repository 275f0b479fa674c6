"""Package layout: folders of the repository that install under the ``cirbench`` name, so the
repository reads like the design and the install adds one name:

    baselines/          -> cirbench.baselines   (the model zoo)
    recipes/            -> cirbench.recipes     (the shipped training recipes, package data)
    results/reported/   -> cirbench.reported    (the paper's printed numbers, package data)

Package data is read through importlib.resources, so an installed wheel has it all."""
from setuptools import find_packages, setup

MAPPED = {"cirbench.baselines": "baselines", "cirbench.recipes": "recipes", "cirbench.reported": "results/reported"}

packages = find_packages(include=["cirbench", "cirbench.*"])
packages += ["cirbench.baselines"] + [f"cirbench.baselines.{p}" for p in find_packages("baselines")]
packages += ["cirbench.recipes", "cirbench.reported"]
setup(packages=packages, package_dir={"cirbench": "cirbench", **MAPPED})

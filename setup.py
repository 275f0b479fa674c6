"""Package layout: the baseline zoo lives in the top-level folder `baselines/` but imports as
`cirbench.baselines`, so the repository reads like the design and the install adds one name."""
from setuptools import find_packages, setup

packages = find_packages(include=["cirbench", "cirbench.*"])
packages += ["cirbench.baselines"] + [f"cirbench.baselines.{p}" for p in find_packages("baselines")]
setup(packages=packages, package_dir={"cirbench": "cirbench", "cirbench.baselines": "baselines"})
